"""Items: a question of one family with its frames, drawn deterministically from a seed.

An item is what an evaluation asks a stream: one frame and one question for the single-frame families; for
``motion``, 2 to 4 frames of one moving scene, each earlier frame with a single-frame question about itself
(answered as it comes, as a robot would be asked along the way) and the last frame with the motion question.
In ``continuous`` mode the stream's state carries the earlier frames to the last question; in ``reset`` mode it
does not, and the motion question cannot be answered better than chance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import spec
from .questions import FAMILIES, SINGLE_FRAME, Question, ask, motion_of
from .render import render
from .scene import Scene, sample_sequence


@dataclass(frozen=True)
class Item:
    family: str
    scenes: tuple[Scene, ...]  # the frames' geometry, in order
    questions: tuple[Question, ...]  # one per frame; the last is the item's own question (its family)
    seed: tuple[int, ...]  # what the frames' sensor noise is drawn from

    @property
    def question(self) -> Question:
        return self.questions[-1]

    def frames(self) -> list[np.ndarray]:
        """BGR uint8 frames [H, W, 3], one per scene (deterministic: the same pixels every call)."""
        return [render(s, np.random.default_rng([*self.seed, k])) for k, s in enumerate(self.scenes)]

    def boxes(self) -> list[np.ndarray]:
        """Each frame's shape boxes [n, 4] normalised, as a detector would report them."""
        return [s.boxes() for s in self.scenes]


def _some_question(rng: np.random.Generator, scene: Scene, families=SINGLE_FRAME) -> Question:
    while True:
        q = ask(families[rng.integers(len(families))], scene, rng)
        if q is not None:
            return q


@dataclass(frozen=True)
class MotionRange:
    """Frames per motion item and the moving shapes' speeds (normalised units per frame); the defaults are the
    world's (spec.SEQUENCE_FRAMES, spec.SPEED_RANGE), which evaluation always uses."""

    frames: tuple[int, int] = spec.SEQUENCE_FRAMES
    speed: tuple[float, float] = spec.SPEED_RANGE
    moves: tuple[float, ...] | None = None  # weights of spec.MOTIONS for every shape's move (None: uniform)

    def __post_init__(self) -> None:
        if self.moves is not None:
            object.__setattr__(self, "moves", valid_move_weights(self.moves))
        if not (2 <= self.frames[0] <= self.frames[1]):
            raise ValueError(f"motion frames {self.frames}: need 2 <= first <= last (one frame cannot tell a motion)")
        if not (0 < self.speed[0] <= self.speed[1]) or (self.frames[1] - 1) * self.speed[1] > 0.4:
            raise ValueError(f"motion speed {self.speed} per frame over {self.frames[1]} frames: need 0 < low <= high "
                             "and a longest travel of at most 0.4 of the frame (the moving shape must stay inside)")


def sample_scene_for(family: str, rng: np.random.Generator, motion: MotionRange | None = None
                     ) -> tuple[list[Scene], str | None]:
    """The frames an item of ``family`` is asked about, drawn so that its answers are balanced, and the kind of
    the shape it names when that shape must be the only one of its kind (colour, motion). ``motion``: frames and
    speeds of motion items other than the world's (a training curriculum)."""
    kind = spec.SHAPES[rng.integers(len(spec.SHAPES))]
    if family == "colour":
        return sample_sequence(rng, anchor_kind=kind), kind
    if family == "path":
        return sample_sequence(rng, path=bool(rng.random() < 0.5)), None
    if family == "motion":
        m = motion or MotionRange()
        frames = int(rng.integers(m.frames[0], m.frames[1] + 1))
        return sample_sequence(rng, frames=frames, anchor_kind=kind, speed_range=m.speed, moves=m.moves), kind
    if family in SINGLE_FRAME:
        return sample_sequence(rng), None
    raise ValueError(f"unknown question family {family!r}; known: {FAMILIES}")


def make_item(family: str, seed: tuple[int, ...], motion: MotionRange | None = None) -> Item:
    """One item of ``family``, determined by ``seed`` (a tuple of ints); ``motion``: a motion item's frames and
    speeds other than the world's (training curricula; the default draws exactly what evaluation draws)."""
    rng = np.random.default_rng([*seed, 7])
    scenes, kind = sample_scene_for(family, rng, motion)
    if family == "motion":
        questions = [_some_question(rng, s) for s in scenes[:-1]] + [motion_of(scenes, kind)]
    else:
        q = None
        while q is None:
            q = ask(family, scenes[-1], rng)
        questions = [q]
    return Item(family, tuple(scenes), tuple(questions), tuple(seed))


def eval_items(seed: int, per_family: int, families=FAMILIES) -> list[Item]:
    """``per_family`` items of each family, family by family; item i of family f is seeded (seed, f, i)."""
    return [make_item(f, (seed, FAMILIES.index(f), i)) for f in families for i in range(per_family)]


def question_weights(given: dict[str, float]) -> tuple[float, ...]:
    """{family: weight} -> the single-frame families' weights in SINGLE_FRAME order (a family not named: 1); a name
    that is not a single-frame family is an error that names it, and so are the weights ``valid_question_weights``
    refuses."""
    return _named(given, SINGLE_FRAME, "question weights", "single-frame family", "single-frame families")


def valid_question_weights(weights) -> tuple[float, ...]:
    """One weight per single-frame family (SINGLE_FRAME order), each finite and >= 0, not all 0 -> them as floats;
    anything else is an error that names it."""
    return _valid(weights, SINGLE_FRAME, "question weights", "single-frame family")


def move_weights(given: dict[str, float]) -> tuple[float, ...]:
    """{move: weight} -> the moves' weights in spec.MOTIONS order (a move not named: 1); a name that is not a move
    is an error that names it, and so are the weights ``valid_move_weights`` refuses."""
    return _named(given, spec.MOTIONS, "move weights", "move", "moves")


def valid_move_weights(weights) -> tuple[float, ...]:
    """One weight per move (spec.MOTIONS order), each finite and >= 0, not all 0 -> them as floats; anything else
    is an error that names it."""
    return _valid(weights, spec.MOTIONS, "move weights", "move")


def _named(given: dict[str, float], names, what: str, one: str, many: str) -> tuple[float, ...]:
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ValueError(f"{what}: unknown {many if len(unknown) > 1 else one} {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(names)}")
    return _valid(tuple(given.get(n, 1.0) for n in names), names, what, one)


def _valid(weights, names, what: str, one: str) -> tuple[float, ...]:
    weights = tuple(float(w) for w in weights)
    if len(weights) != len(names):
        raise ValueError(f"{what}: {len(weights)} given, one per {one} expected ({', '.join(names)})")
    for n, w in zip(names, weights):
        if not np.isfinite(w) or w < 0:
            raise ValueError(f"{what}: {n}={w} must be a finite weight >= 0")
    if sum(weights) <= 0:
        raise ValueError(f"{what}: at least one {one} needs a weight > 0")
    return weights


def training_scene(rng: np.random.Generator, questions: int,
                   weights: tuple[float, ...] | None = None) -> tuple[Scene, list[Question]]:
    """One still scene (balanced for a family drawn at random) and up to ``questions`` distinct questions about
    it from the single-frame families. ``weights`` (``question_weights``; None: uniform) weigh the families drawn,
    for the scene's balance and for each question; None keeps the uniform draws (and so every batch) as they were."""
    if weights is None:
        def draw() -> str:
            return SINGLE_FRAME[rng.integers(len(SINGLE_FRAME))]
    else:
        p = np.asarray(valid_question_weights(weights), dtype=np.float64)
        p /= p.sum()

        def draw() -> str:
            return SINGLE_FRAME[int(rng.choice(len(SINGLE_FRAME), p=p))]
    family = draw()
    (scene,), _ = sample_scene_for(family, rng)
    first = None
    while first is None:
        first = ask(family, scene, rng)
    out = {first.prompt: first}
    for _ in range(questions * 3):
        if len(out) == questions:
            break
        q = ask(draw(), scene, rng)
        if q is not None and q.prompt not in out:
            out[q.prompt] = q
    return scene, list(out.values())
