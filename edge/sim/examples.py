"""Camera views of edge/sim's world with their exact values: what action heads are trained and evaluated on.

    examples = head_examples(seed=0, n=2000)
    examples[0].frame, examples[0].prompt, examples[0].truth   # BGR frame; 'Where is the red circle?';
                                                               # {"bearing", "distance", "visible", "blocked"}

Each example is a world of ``make_world(seed, k)`` seen from a pose an approach would pass through: somewhere from
the start to just short of the target (a fraction ``along`` of the way, up to ``lateral`` m off it), heading at the
target give or take ``spread`` radians (so about one view in five has the target at the edge of or out of view);
a share ``near_share`` of the views is drawn from the last stretch (``near``), where the path becomes blocked and
stopping is decided.
The values are the camera's truth (edge/sim/camera.py): bearing (target's direction over half the field of view,
clipped to [-1, 1]), distance (gap from the robot's edge to the target's, m), visible and blocked (0 or 1).
Deterministic per (seed, index); no example overlaps the robot with a body.

``approach(seed, index)`` is what a continuous stream sees: every frame of one episode, in order, while an oracle
with a perturbed perception drives (a bias on the bearing for the episode, noise per tick), so the robot weaves
and sometimes collides as a model-driven one does. Heads for continuous streams train on the hidden states after
the episode's earlier frames (export/train_heads.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .camera import CameraConfig, look
from .dynamics import Command
from .world import Robot, WorldConfig, make_world

HEAD_PROMPT = "Where is the {colour} {kind}?"  # the position family's question: the model already binds it to a place
VALUES = ("bearing", "distance", "visible", "blocked")


@dataclass(frozen=True)
class HeadExample:
    frame: np.ndarray  # BGR uint8 [H, W, 3]
    prompt: str
    truth: dict  # {value name: float}
    seed: tuple[int, int]


def head_prompt(colour: str, kind: str, template: str = HEAD_PROMPT) -> str:
    return template.format(colour=colour, kind=kind)


def head_example(seed: int, index: int, camera: CameraConfig | None = None, along: tuple = (0.0, 0.92),
                 lateral: float = 0.3, spread: float = math.radians(40), near_share: float = 0.3,
                 near: tuple = (0.7, 0.95)) -> HeadExample:
    rng = np.random.default_rng([int(seed), int(index), 0x4EAD])
    world = make_world(int(seed) * 100_003 + int(index))
    t, r = world.target, world.robot
    while True:
        f = float(rng.uniform(*(near if rng.random() < near_share else along)))
        off = float(rng.uniform(-lateral, lateral))
        dx, dy = t.x - r.x, t.y - r.y
        norm = math.hypot(dx, dy)
        x = r.x + f * dx - off * dy / norm
        y = r.y + f * dy + off * dx / norm
        heading = math.atan2(t.y - y, t.x - x) + float(rng.uniform(-spread, spread))
        world.robot = Robot(x, y, heading)
        if world.collision() is None:
            break
    view = look(world, camera)
    truth = {"bearing": float(np.clip(view.truth.bearing, -1, 1)), "distance": float(view.truth.distance),
             "visible": float(view.truth.visible), "blocked": float(view.truth.blocked)}
    return HeadExample(view.frame(rng), head_prompt(t.colour, t.kind), truth, (int(seed), int(index)))


def head_examples(seed: int, n: int, camera: CameraConfig | None = None) -> list[HeadExample]:
    """``n`` examples of ``seed`` (indices 0 .. n-1)."""
    return [head_example(seed, i, camera) for i in range(n)]


APPROACH_TICK_MS = 20.0  # the plain world's tick for approach(): what --time-scale 8 at 2.5 ms is (docs/loop.md)


class _PerturbedOracle:
    """The loop's controller on the truth, with the bearing biased (per episode) and noisy (per tick); records
    every frame with its exact values."""

    name = "perturbed-oracle"
    needs_frame = True

    def __init__(self, rng: np.random.Generator, bias: float, noise: float, overshoot: bool = False):
        from .policies import Controller

        self.controller, self.rng, self.bias, self.noise = Controller(), rng, bias, noise
        self.overshoot = overshoot  # never stop: drive on into the target (frames of a stop that came too late)
        self.frames: list[tuple[np.ndarray, dict]] = []
        self.v_max = 0.0

    def begin(self, world) -> None:
        self.v_max = world.config.v_max

    def __call__(self, frame, truth) -> Command:
        self.frames.append((frame, {"bearing": float(np.clip(truth.bearing, -1, 1)),
                                    "distance": float(truth.distance), "visible": float(truth.visible),
                                    "blocked": float(truth.blocked)}))
        bearing = truth.bearing + self.bias + float(self.rng.normal(0, self.noise))
        if self.overshoot:
            return self.controller.command(bearing, max(truth.distance, 1.0), self.v_max, False, truth.visible)
        return self.controller.command(bearing, truth.distance, self.v_max, truth.blocked, truth.visible)

    def summary(self) -> dict:
        return {}


def approach(seed: int, index: int, bias: float = 0.15, noise: float = 0.1, camera: CameraConfig | None = None,
             world: WorldConfig | None = None, overshoot: bool = False, tick_ms: float = APPROACH_TICK_MS
             ) -> list[HeadExample]:
    """Every frame of one episode in the world of ``make_world`` seed ``seed * 100_003 + index`` (other seeds than
    the loop's episodes 0 .. n), ticks of ``tick_ms`` (a robot at twice the latency sees every other frame: a state
    that remembers its frames sees larger moves between them), the oracle's bearing biased by up to ``bias`` and
    noisy by ``noise`` (standard deviation) -> the frames in order, each with the episode's prompt and its truth.
    ``overshoot``: the robot never stops (it drives on into the target), so the episode also has the frames of a
    stop that came too late: the target blocking the path, closer than the stop gap."""
    from .loop import LoopSettings, run_episode

    rng = np.random.default_rng([int(seed), int(index), 0xA9909])
    policy = _PerturbedOracle(rng, float(rng.uniform(-bias, bias)), noise, overshoot)
    world_seed = int(seed) * 100_003 + int(index)
    run_episode(policy, world_seed, LoopSettings(float(tick_ms), 1.0, world or WorldConfig(),
                                                 camera or CameraConfig()))
    target = make_world(world_seed, world).target
    prompt = head_prompt(target.colour, target.kind)
    return [HeadExample(f, prompt, t, (int(seed), int(index))) for f, t in policy.frames]
