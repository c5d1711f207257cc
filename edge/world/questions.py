"""Question families with exact answers, read from a scene's geometry (edge/world/scene.py).

Each family has one template and a closed answer set; a question is asked only where its answer is exact
(a named shape is the only one of its kind, no centre near a boundary its answer depends on).

| family | template | answers |
|---|---|---|
| colour | What colour is the {shape}? | red, orange, yellow, green, blue, purple, white |
| position | Where is the {colour} {shape}? | left, centre, right (thirds of the width, by its centre) |
| count | How many shapes are there? | one, two, three, four |
| presence | Is there a {colour} {shape}? | yes, no |
| path | Is the path clear? | yes (no shape's centre in the lower centre of the view), no |
| motion | Which way is the {shape} moving? | left, right, up, down, still (needs two or more frames) |
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import spec
from .scene import Scene, near_band, path_blocked, third

FAMILIES = ("colour", "position", "count", "presence", "path", "motion")
SINGLE_FRAME = FAMILIES[:-1]
TEMPLATES = {
    "colour": "What colour is the {shape}?",
    "position": "Where is the {colour} {shape}?",
    "count": "How many shapes are there?",
    "presence": "Is there a {colour} {shape}?",
    "path": "Is the path clear?",
    "motion": "Which way is the {shape} moving?",
}
NUMBERS = ("one", "two", "three", "four")
ANSWERS = {
    "colour": tuple(spec.COLOURS),
    "position": ("left", "centre", "right"),
    "count": NUMBERS[:spec.MAX_SHAPES],
    "presence": ("yes", "no"),
    "path": ("yes", "no"),
    "motion": spec.MOTIONS,
}


@dataclass(frozen=True)
class Question:
    family: str
    prompt: str
    answer: str


def colour_of(scene: Scene, kind: str) -> Question | None:
    same = [s for s in scene.shapes if s.kind == kind]
    if len(same) != 1:
        return None
    return Question("colour", TEMPLATES["colour"].format(shape=kind), same[0].colour)


def position_of(scene: Scene, colour: str, kind: str) -> Question | None:
    same = [s for s in scene.shapes if s.kind == kind and s.colour == colour]
    if len(same) != 1 or near_band(same[0])[0]:
        return None
    return Question("position", TEMPLATES["position"].format(colour=colour, shape=kind), third(same[0].cx))


def count(scene: Scene) -> Question:
    return Question("count", TEMPLATES["count"], NUMBERS[len(scene.shapes) - 1])


def presence(scene: Scene, colour: str, kind: str) -> Question:
    there = any(s.kind == kind and s.colour == colour for s in scene.shapes)
    return Question("presence", TEMPLATES["presence"].format(colour=colour, shape=kind), "yes" if there else "no")


def path_clear(scene: Scene) -> Question | None:
    x0, x1, _, _ = spec.PATH_REGION
    for s in scene.shapes:  # a centre near the region's edges would make the answer depend on a pixel
        near_x, near_y = near_band(s)
        if (near_y and x0 - spec.BAND <= s.cx <= x1 + spec.BAND) or (near_x and s.cy >= spec.PATH_REGION[2] - spec.BAND):
            return None
    return Question("path", TEMPLATES["path"], "no" if path_blocked(scene.shapes) else "yes")


def motion_of(scenes: list[Scene], kind: str) -> Question | None:
    """The direction the only shape of ``kind`` moved between the first and the last frame."""
    if len(scenes) < 2:
        return None
    first = [s for s in scenes[0].shapes if s.kind == kind]
    last = [s for s in scenes[-1].shapes if s.kind == kind]
    if len(first) != 1 or len(last) != 1:
        return None
    dx, dy = last[0].cx - first[0].cx, last[0].cy - first[0].cy
    if max(abs(dx), abs(dy)) < 1e-6:
        answer = "still"
    elif abs(dx) >= abs(dy):
        answer = "right" if dx > 0 else "left"
    else:
        answer = "down" if dy > 0 else "up"
    return Question("motion", TEMPLATES["motion"].format(shape=kind), answer)


def ask(family: str, scene: Scene, rng: np.random.Generator) -> Question | None:
    """A question of a single-frame ``family`` about ``scene`` (None when the scene has no exact one)."""
    shapes = scene.shapes
    if family == "colour":
        kinds = [k for k in spec.SHAPES if sum(s.kind == k for s in shapes) == 1]
        return colour_of(scene, kinds[rng.integers(len(kinds))]) if kinds else None
    if family == "position":
        s = shapes[rng.integers(len(shapes))]
        return position_of(scene, s.colour, s.kind)
    if family == "count":
        return count(scene)
    if family == "presence":
        if rng.random() < 0.5:  # yes
            s = shapes[rng.integers(len(shapes))]
            return presence(scene, s.colour, s.kind)
        present = {(s.colour, s.kind) for s in shapes}
        s = shapes[rng.integers(len(shapes))]
        kind = rng.random()
        if kind < 0.35:  # same colour, other shape
            options = [(s.colour, k) for k in spec.SHAPES]
        elif kind < 0.7:  # same shape, other colour
            options = [(c, s.kind) for c in spec.COLOURS]
        else:
            options = [(c, k) for c in spec.COLOURS for k in spec.SHAPES]
        options = [o for o in options if o not in present] or [
            (c, k) for c in spec.COLOURS for k in spec.SHAPES if (c, k) not in present]
        colour, k = options[rng.integers(len(options))]
        return presence(scene, colour, k)
    if family == "path":
        return path_clear(scene)
    raise ValueError(f"unknown single-frame question family {family!r}; known: {SINGLE_FRAME}")
