"""Policies: act on head outputs (a fake act_fn; perfect heads equal the oracle), the Stream.act adapter (a fake
stream), and choose through a real exported artifact for a few ticks."""

from types import SimpleNamespace

import numpy as np
import pytest

from edge.sim import (WORDS, ActPolicy, ChoosePolicy, Command, Controller, LoopSettings, OraclePolicy, WorldConfig,
                      make_world, run_episode, run_episodes, stream_act_fn)
from edge.sim.dynamics import STOP


def test_act_steers_from_bearing_and_distance_and_stops_when_blocked():
    outputs = {}
    policy = ActPolicy(lambda frame, prompt: dict(outputs))
    policy.begin(make_world(0))
    v_max, c = make_world(0).config.v_max, Controller()
    outputs.update(bearing=0.2, distance=1.5)
    assert policy(None, None) == Command(v_max, -c.turn_gain * 0.2), "target right: drive and turn right"
    outputs.update(bearing=-0.8)
    assert policy(None, None) == Command(0.0, c.turn_gain * 0.8), "far off to the left: turn left in place"
    outputs.update(bearing=0.0, distance=0.1)
    assert policy(None, None) == STOP, "within the stop gap"
    outputs.update(distance=1.5, blocked=0.9)
    assert policy(None, None) == STOP, "the path is blocked"
    outputs.update(blocked=0.1, visible=0.0, bearing=0.3)
    assert policy(None, None) == Command(0.0, -c.search_w), "out of sight: search toward the bearing's side"
    with pytest.raises(ValueError, match=r"lack \['distance'\]"):
        ActPolicy(lambda f, p: {"bearing": 0.0}).__call__(None, None)
    with pytest.raises(ValueError, match="non-finite"):
        ActPolicy(lambda f, p: {"bearing": float("nan"), "distance": 1.0}).__call__(None, None)


def test_act_with_perfect_heads_is_the_oracle():
    seen = {}

    class Spy(ActPolicy):  # hands the truth to the fake heads, as perfect perception would
        def __call__(self, frame, truth):
            seen["truth"], seen["frame"] = truth, frame
            return super().__call__(frame, truth)

    def heads(frame, prompt):
        t = seen["truth"]
        seen["prompt"] = prompt
        return {"bearing": t.bearing, "distance": t.distance, "blocked": float(t.blocked), "visible": float(t.visible)}

    act = run_episodes(Spy(heads), 5, seed=40, latency=60.0)
    oracle = run_episodes(OraclePolicy(), 5, seed=40, latency=60.0)
    assert [e.simulated() for e in act.episodes] == [e.simulated() for e in oracle.episodes]
    assert seen["frame"].shape == (240, 320, 3)
    w = make_world(44)
    assert seen["prompt"] == f"Where should I go to reach the {w.target.colour} {w.target.kind}?"


def test_stream_act_fn_calls_stream_act_outputs():
    calls = []

    class FakeStream:
        name = "cam"

        def act(self, frame, prompt):
            calls.append(prompt)
            return SimpleNamespace(outputs={"bearing": -0.1, "distance": 2.0}, text="ignored")

    fn = stream_act_fn(FakeStream())
    assert fn(np.zeros((4, 4, 3), np.uint8), "go") == {"bearing": -0.1, "distance": 2.0} and calls == ["go"]
    e = run_episode(ActPolicy(fn), 0, LoopSettings(latency_ms=50.0, world=WorldConfig(timeout=0.5)))
    assert e.ticks == 10 and len(calls) == 11
    with pytest.raises(ValueError, match="has no act"):
        stream_act_fn(SimpleNamespace(name="old"))


@pytest.mark.parametrize("mode", ["reset", "continuous"])
def test_choose_runs_a_few_ticks_through_an_exported_artifact(tiny_artifact, mode):
    from edge.runtime import Runtime

    rt = Runtime.load(tiny_artifact, threads=1)
    settings = LoopSettings(latency_ms=100.0, world=WorldConfig(timeout=0.5))
    results = []
    for name in ("a", "b"):
        policy = ChoosePolicy(rt.open_stream(f"{name}-{mode}", mode=mode))
        results.append((run_episode(policy, 3, settings), policy.summary()))
    (episode, summary), (again, _) = results
    print(episode, summary)
    assert episode.ticks == 5 and sum(summary["chosen"].values()) == 5 and set(summary["chosen"]) == set(WORDS)
    assert episode.simulated() == again.simulated(), "fixed latency: the model's choices and the episode repeat exactly"
    assert summary["mode"] == mode and episode.policy_ms_median > 0
