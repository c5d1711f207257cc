"""The control loop: seeded episodes of a policy driving the robot in a world, with the model's latency in it.

One tick (simulated time t, seconds):
    1. the camera renders the newest frame from the robot's pose at t (edge/sim/camera.py)
    2. the policy is called on it; its wall time is measured (time.perf_counter)
    3. the tick's latency passes in simulated time: ``latency_ms`` if fixed, else the measured wall time (at least
       ``MIN_MEASURED_MS``); either way times ``multiplier``. Meanwhile the PREVIOUS command still drives the
       robot (the robot keeps moving while the model thinks), integrated in sub-steps with collision checks
    4. the new command applies; if it is a stop within the goal gap of the target, the episode succeeded
So a command decided on the frame of time t acts from t + latency to t + 2 x latency: what latency costs.

Outcomes: "success" (stopped with the target's gap in (0, goal_gap], never touching anything), "collision" (the
robot's disc touched a body, the target included, or a wall), "timeout". With a fixed latency an episode is
a function of (policy, seed, latency, multiplier): the world and the sensor noise come from the seed.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from .camera import CameraConfig, look
from .dynamics import STOP, advance, clip
from .world import WorldConfig, make_world

MIN_MEASURED_MS = 1.0  # a measured tick is at least this long (bounds the ticks per simulated second)
OUTCOMES = ("success", "collision", "timeout")


@dataclass(frozen=True)
class LoopSettings:
    """How simulated time advances per tick: ``latency_ms`` fixed (deterministic) or None (the policy call's
    measured wall time), times ``multiplier``; the world's and the camera's constants."""

    latency_ms: float | None = None
    multiplier: float = 1.0
    world: WorldConfig = field(default_factory=WorldConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)

    def __post_init__(self):
        if self.latency_ms is not None and not (math.isfinite(self.latency_ms) and self.latency_ms > 0):
            raise ValueError(f"latency_ms must be a number > 0 or None (measured), got {self.latency_ms!r}")
        if not (math.isfinite(self.multiplier) and self.multiplier > 0):
            raise ValueError(f"multiplier must be a number > 0, got {self.multiplier!r}")

    @property
    def source(self) -> str:
        return "measured" if self.latency_ms is None else "fixed"


@dataclass
class Episode:
    """One episode's outcome. Times in simulated seconds, latencies in simulated ms per tick (``policy_ms``: the
    policy's measured wall time, whatever the latency source)."""

    seed: int
    outcome: str  # OUTCOMES
    time_s: float  # when it ended (success: when the stop applied)
    ticks: int
    final_gap_m: float  # the target's gap at the end
    collided_with: str | None
    latency_ms_mean: float
    latency_ms_median: float
    policy_ms_median: float  # wall clock: informational, never part of the simulation with a fixed latency

    def simulated(self) -> dict:
        """Everything but the wall-clock field: with a fixed latency a function of (policy, seed, settings)."""
        d = asdict(self)
        del d["policy_ms_median"]
        return d


@dataclass
class Results:
    """Episodes of one (policy, mode, latency, multiplier) and their summary (``summary()``)."""

    policy: str
    mode: str | None
    settings: LoopSettings
    episodes: list[Episode]
    policy_summary: dict = field(default_factory=dict)

    def summary(self) -> dict:
        eps = self.episodes
        n = len(eps)
        wins = [e.time_s for e in eps if e.outcome == "success"]
        lat = [e.latency_ms_median for e in eps]
        return {
            "episodes": n,
            "success_rate": len(wins) / n if n else 0.0,
            "successes": len(wins),
            "collisions": sum(e.outcome == "collision" for e in eps),
            "timeouts": sum(e.outcome == "timeout" for e in eps),
            "median_time_to_goal_s": float(np.median(wins)) if wins else None,
            "ticks": int(sum(e.ticks for e in eps)),
            "latency_ms_median": float(np.median(lat)) if lat else None,
            "policy_ms_median": float(np.median([e.policy_ms_median for e in eps])) if eps else None,
        }

    def to_dict(self) -> dict:
        return {"policy": self.policy, "mode": self.mode, "latency_source": self.settings.source,
                "latency_ms": self.settings.latency_ms, "multiplier": self.settings.multiplier,
                "summary": self.summary(), "episodes": [asdict(e) for e in self.episodes],
                "policy_summary": self.policy_summary}


def run_episode(policy, seed: int, settings: LoopSettings | None = None) -> Episode:
    """One episode of ``policy`` in the world of ``seed`` (see the module docstring for the tick)."""
    s = settings or LoopSettings()
    world = make_world(seed, s.world)
    noise = np.random.default_rng([int(seed), 0xF4A3E])  # the frames' sensor noise, apart from the world's draw
    policy.begin(world)
    t, command, ticks = 0.0, STOP, 0
    latencies, walls = [], []
    outcome, hit = "timeout", None
    while t < s.world.timeout:
        view = look(world, s.camera)
        frame = view.frame(noise) if policy.needs_frame else None
        t0 = time.perf_counter()
        proposed = policy(frame, view.truth)
        wall_ms = (time.perf_counter() - t0) * 1e3
        base = s.latency_ms if s.latency_ms is not None else max(wall_ms, MIN_MEASURED_MS)
        latency = base * s.multiplier / 1e3
        latencies.append(latency * 1e3)
        walls.append(wall_ms)
        moved, hit = advance(world, command, min(latency, s.world.timeout - t))
        t += moved
        ticks += 1
        if hit is not None:
            outcome = "collision"
            break
        if t >= s.world.timeout - 1e-12:
            break
        command = clip(proposed, world)
        if command.is_stop and 0.0 < world.gap(world.target) <= s.world.goal_gap:
            outcome = "success"
            break
    return Episode(int(seed), outcome, t, ticks, world.gap(world.target), hit, float(np.mean(latencies)),
                   float(np.median(latencies)), float(np.median(walls)))


def run_episodes(policy, n: int, seed: int = 0, latency: float | None = None, multiplier: float = 1.0,
                 world: WorldConfig | None = None, camera: CameraConfig | None = None, mode: str | None = None,
                 on_episode=None) -> Results:
    """``n`` episodes of seeds ``seed .. seed + n - 1``. ``latency``: ms per tick (fixed, deterministic) or None
    (each call's measured wall time); ``multiplier`` scales either. ``mode``: the stream mode the policy's stream
    was opened with, recorded (None for policies without a stream). ``on_episode(episode)`` after each."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"run_episodes: n must be an int >= 1, got {n!r}")
    settings = LoopSettings(latency, multiplier, world or WorldConfig(), camera or CameraConfig())
    getattr(policy, "reset_stats", lambda: None)()  # policy.summary() then covers these episodes alone
    episodes = []
    for k in range(n):
        episodes.append(run_episode(policy, seed + k, settings))
        if on_episode is not None:
            on_episode(episodes[-1])
    return Results(policy.name, mode, settings, episodes, policy.summary())
