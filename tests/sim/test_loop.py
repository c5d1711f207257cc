"""The control loop: deterministic per seed and latency, the oracle's success falling with latency, collisions and
timeouts counted, measured latency fed into simulated time."""

import time

import numpy as np
import pytest

from edge.sim import Command, LoopSettings, OraclePolicy, WorldConfig, run_episode, run_episodes
from edge.sim.dynamics import STOP


class FramePolicy:
    """Reads the frame (so the loop renders one per tick) and keeps a digest of every frame it saw; steers as the
    oracle does."""

    name = "frames"
    needs_frame = True

    def __init__(self):
        self.oracle, self.digests = OraclePolicy(), []

    def begin(self, world):
        self.oracle.begin(world)

    def __call__(self, frame, truth):
        assert frame.dtype == np.uint8 and frame.shape == (240, 320, 3)
        self.digests.append(int(frame.astype(np.int64).sum()))
        return self.oracle(frame, truth)

    def summary(self):
        return {}


class Blind:
    """Drives straight ahead at full speed whatever it sees."""

    name = "blind"
    needs_frame = False

    def begin(self, world):
        self.v = world.config.v_max

    def __call__(self, frame, truth):
        return Command(self.v, 0.0)

    def summary(self):
        return {}


def test_episodes_are_deterministic_per_seed_and_latency():
    a = run_episodes(OraclePolicy(), 4, seed=11, latency=40.0, multiplier=2)
    b = run_episodes(OraclePolicy(), 4, seed=11, latency=40.0, multiplier=2)
    assert [e.simulated() for e in a.episodes] == [e.simulated() for e in b.episodes]
    assert a.summary()["success_rate"] == b.summary()["success_rate"]
    c = run_episodes(OraclePolicy(), 4, seed=11, latency=20.0)
    assert [e.ticks for e in c.episodes] != [e.ticks for e in a.episodes], "the latency setting changes the run"
    short = LoopSettings(latency_ms=50.0, world=WorldConfig(timeout=1.0))
    p, q = FramePolicy(), FramePolicy()
    ea, eb = run_episode(p, 3, short), run_episode(q, 3, short)
    assert ea.simulated() == eb.simulated(), "a frame-reading policy repeats too"
    assert p.digests == q.digests and len(p.digests) == ea.ticks, "same frames, same sensor noise"


def test_oracle_success_falls_with_latency():
    fast = run_episodes(OraclePolicy(), 20, seed=100, latency=20.0).summary()
    slow = run_episodes(OraclePolicy(), 20, seed=100, latency=20.0, multiplier=8).summary()
    print(f"oracle at 20 ms: {fast}\noracle at 160 ms: {slow}")
    assert fast["success_rate"] >= 0.9 and fast["collisions"] == 0
    assert slow["success_rate"] <= 0.5 and slow["collisions"] >= 10, "overshooting the 0.2 m stop gap"
    assert slow["ticks"] < fast["ticks"] / 4


def test_a_faster_world_at_latency_l_is_the_plain_world_at_k_times_l():
    """--time-scale K: every rate x K, the timeout / K. The oracle's episodes there at L ms are those of the plain
    world at K x L ms, outcome for outcome, in 1/K of the time (to rounding)."""
    from edge.sim import Controller

    k = 8
    fast = run_episodes(OraclePolicy(Controller().faster(k)), 12, seed=40, latency=2.5, world=WorldConfig().faster(k))
    plain = run_episodes(OraclePolicy(), 12, seed=40, latency=2.5 * k)
    assert [(e.outcome, e.ticks, e.collided_with) for e in fast.episodes] == [
        (e.outcome, e.ticks, e.collided_with) for e in plain.episodes]
    assert all(abs(f.time_s * k - p.time_s) < 1e-6 and abs(f.final_gap_m - p.final_gap_m) < 1e-6
               for f, p in zip(fast.episodes, plain.episodes))
    assert {e.outcome for e in plain.episodes} >= {"success"}
    with pytest.raises(ValueError, match="time scale must be a finite number > 0"):
        WorldConfig().faster(0)


def test_driving_blind_collides_in_every_episode():
    r = run_episodes(Blind(), 6, seed=0, latency=20.0)
    assert r.summary()["collisions"] == 6 and r.summary()["successes"] == 0
    assert all(e.collided_with for e in r.episodes)


def test_a_policy_that_never_moves_times_out():
    class Still(Blind):
        def __call__(self, frame, truth):
            return STOP

    e = run_episode(Still(), 0, LoopSettings(latency_ms=100.0, world=WorldConfig(timeout=2.0)))
    assert e.outcome == "timeout" and e.ticks == 20 and e.time_s == pytest.approx(2.0)


def test_measured_latency_is_the_call_time_times_the_multiplier():
    class Slow(Blind):
        def __call__(self, frame, truth):
            time.sleep(0.003)
            return STOP

    e = run_episode(Slow(), 0, LoopSettings(latency_ms=None, multiplier=4, world=WorldConfig(timeout=0.3)))
    assert e.policy_ms_median >= 3 and e.latency_ms_median == pytest.approx(4 * e.policy_ms_median, rel=0.5)
    assert e.latency_ms_median >= 12 and e.ticks <= 300 / 12 + 1
    with pytest.raises(ValueError, match="latency_ms"):
        LoopSettings(latency_ms=0)
    with pytest.raises(ValueError, match="n must be"):
        run_episodes(OraclePolicy(), 0)
