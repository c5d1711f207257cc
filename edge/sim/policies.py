"""Policies: what turns the newest frame into a velocity command, once per control tick.

A policy is called as ``policy(frame, truth) -> (v m/s, w rad/s)`` with the frame (BGR uint8 [H, W, 3], or None
when ``policy.needs_frame`` is False) and the view's exact truth (edge/sim/camera.py ``Truth``: only the oracle
reads it). ``policy.begin(world)`` starts an episode (the prompt names its target); ``policy.summary()`` is what
the report records beside the outcomes (e.g. how often each word was chosen) since ``policy.reset_stats()``.

    oracle    the truth through the ``Controller``: the upper bound of that controller, and what the tests use
    choose    answer-set scoring: ``stream.choose(frame, prompt, ["left", "right", "ahead", "stop"])``, one
              fixed command per word (edge/scoring.py)
    act       named head outputs ``act_fn(frame, prompt) -> {"bearing", "distance", ["blocked"], ["visible"]}``
              through the same ``Controller`` as the oracle; ``stream_act_fn(stream)`` adapts ``Stream.act``
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Callable

from .dynamics import STOP, Command
from .world import World

PROMPT = "Where should I go to reach the {colour} {kind}?"  # the embedded model never saw it: the point is the wiring
WORDS = ("left", "right", "ahead", "stop")


def target_prompt(template: str, world: World) -> str:
    """``template`` with {colour} and {kind} of the episode's target (a ValueError names an unknown field)."""
    try:
        return template.format(colour=world.target.colour, kind=world.target.kind)
    except (KeyError, IndexError) as e:
        raise ValueError(f"prompt template {template!r}: only {{colour}} and {{kind}} can be filled, not {e}") from None


@dataclass(frozen=True)
class Controller:
    """A reactive steering law from (bearing, distance, blocked, visible) to a command; the oracle and the act
    policy share it, so the oracle is the act policy with perfect perception. It does not know the latency and
    does not compensate for it (on purpose: it is what a model's head outputs feed).

    - not visible: turn in place toward the side the bearing says, at ``search_w``
    - blocked, or the target's gap at most ``stop_gap``: stop
    - else turn at ``-turn_gain * bearing`` (rad/s; a target on the right, bearing > 0, turns right), and drive at
      the robot's top speed when ``|bearing| <= align`` (else turn in place)
    """

    turn_gain: float = 1.5  # rad/s per unit of normalised bearing (1 = the edge of the view, 30 degrees here)
    align: float = 0.35  # |bearing| above which the robot turns in place
    stop_gap: float = 0.2  # m: stop when the target is this close
    search_w: float = 1.0  # rad/s: turning while the target is out of sight

    def faster(self, k: float) -> "Controller":
        """The same law for a world run ``k`` times faster (``WorldConfig.faster``): turn rates x k."""
        return replace(self, turn_gain=self.turn_gain * k, search_w=self.search_w * k)

    def command(self, bearing: float, distance: float, v_max: float, blocked: bool = False,
                visible: bool = True) -> Command:
        if not visible:
            return Command(0.0, -math.copysign(self.search_w, bearing))
        if blocked or distance <= self.stop_gap:
            return STOP
        w = -self.turn_gain * bearing
        return Command(v_max if abs(bearing) <= self.align else 0.0, w)


class OraclePolicy:
    """The controller on the exact truth (not on the frame): the best this controller does at a given latency."""

    name = "oracle"
    needs_frame = False

    def __init__(self, controller: Controller | None = None):
        self.controller = controller or Controller()
        self.v_max = 0.0

    def begin(self, world: World) -> None:
        self.v_max = world.config.v_max

    def reset_stats(self) -> None:
        pass

    def __call__(self, frame, truth) -> Command:
        return self.controller.command(truth.bearing, truth.distance, self.v_max, truth.blocked, truth.visible)

    def summary(self) -> dict:
        return {"controller": asdict(self.controller)}


class ChoosePolicy:
    """Answer-set scoring on a stream: the word the model scores highest among ``WORDS`` after ``prompt`` becomes
    a fixed command: left / right turn in place at ``turn_w`` rad/s, ahead drives straight at the robot's top
    speed, stop stops. The stream's state is reset at each episode's start (continuous streams carry state only
    within an episode; note that answer-set scoring itself never writes the stream's state: edge/scoring.py)."""

    name = "choose"
    needs_frame = True

    def __init__(self, stream, prompt: str = PROMPT, turn_w: float = 1.5):
        self.stream, self.template, self.turn_w = stream, prompt, turn_w
        self.prompt = ""
        self.v_max = 0.0
        self.counts: Counter = Counter()

    def begin(self, world: World) -> None:
        self.prompt = target_prompt(self.template, world)
        self.v_max = world.config.v_max
        self.stream.reset()

    def reset_stats(self) -> None:
        self.counts.clear()

    def __call__(self, frame, truth) -> Command:
        word = self.stream.choose(frame, self.prompt, list(WORDS)).answer
        self.counts[word] += 1
        return {"left": Command(0.0, self.turn_w), "right": Command(0.0, -self.turn_w),
                "ahead": Command(self.v_max, 0.0), "stop": STOP}[word]

    def summary(self) -> dict:
        total = sum(self.counts.values()) or 1
        return {"prompt": self.template, "mode": getattr(self.stream, "mode", None), "turn_w": self.turn_w,
                "chosen": {w: self.counts[w] for w in WORDS},
                "chosen_share": {w: round(self.counts[w] / total, 4) for w in WORDS}}


ActFn = Callable[[object, str], dict]  # (frame BGR uint8 [H, W, 3], prompt) -> {output name: float}
ACT_KEYS = ("bearing", "distance")  # required outputs: bearing -1..1 (left negative), distance m (the target's gap)
ACT_OPTIONAL = ("blocked", "visible")  # read when present: > 0.5 means true (probabilities or 0 / 1)


class ActPolicy:
    """Head outputs through the oracle's controller: ``act_fn(frame, prompt)`` returns named floats; "bearing"
    (the target's direction / half the FOV, -1..1, left negative) and "distance" (its gap, m) are required,
    "blocked" (the path region is occupied) and "visible" (the target is in view) are used when present."""

    name = "act"
    needs_frame = True

    def __init__(self, act_fn: ActFn, prompt: str = PROMPT, controller: Controller | None = None, reset=None):
        self.act_fn, self.template = act_fn, prompt
        self.controller = controller or Controller()
        self.reset = reset  # called at each episode's start (the stream's reset), if given
        self.prompt = ""
        self.v_max = 0.0
        self.ticks = 0

    def begin(self, world: World) -> None:
        self.prompt = target_prompt(self.template, world)
        self.v_max = world.config.v_max
        if self.reset is not None:
            self.reset()

    def reset_stats(self) -> None:
        self.ticks = 0

    def __call__(self, frame, truth) -> Command:
        out = self.act_fn(frame, self.prompt)
        missing = [k for k in ACT_KEYS if k not in out]
        if missing:
            raise ValueError(f"act policy: the head outputs lack {missing}; got {sorted(out)} (needs {list(ACT_KEYS)}, "
                             f"reads {list(ACT_OPTIONAL)} when present)")
        values = {k: float(out[k]) for k in ACT_KEYS + ACT_OPTIONAL if k in out}
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            raise ValueError(f"act policy: non-finite head outputs {bad}")
        self.ticks += 1
        return self.controller.command(values["bearing"], values["distance"], self.v_max,
                                       values.get("blocked", 0.0) > 0.5, values.get("visible", 1.0) > 0.5)

    def summary(self) -> dict:
        return {"prompt": self.template, "controller": asdict(self.controller), "reads": list(ACT_KEYS + ACT_OPTIONAL),
                "ticks": self.ticks}


def stream_act_fn(stream) -> ActFn:
    """``act_fn`` over a runtime stream with action heads: ``stream.act(frame, prompt).outputs`` (a dict of named
    floats). A stream without ``act`` is a clear error now, not at the first tick."""
    act = getattr(stream, "act", None)
    if not callable(act):
        raise ValueError(f"stream {getattr(stream, 'name', stream)!r} has no act(): this runtime has no action heads "
                         "(Stream.act), so --policy act cannot run")

    def act_fn(frame, prompt: str) -> dict:
        return dict(act(frame, prompt).outputs)

    return act_fn
