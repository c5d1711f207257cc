"""Scenes of coloured shapes as geometry (no pixels): what the question families read their answers from.

A ``Scene`` is one frame's shapes and background; a sequence of scenes (2 to 4 frames) shares the background
and moves each shape at a constant velocity. Everything is drawn from a ``numpy.random.Generator``, so a scene is
determined by its seed. Numbers: edge/world/spec.py (and docs/world.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import spec


@dataclass(frozen=True)
class Shape:
    """One shape: ``kind`` in spec.SHAPES, ``colour`` in spec.COLOURS, centre (cx, cy) normalised, ``size`` its
    bounding box side over the frame's shorter side, ``fill`` the RGB it is drawn with (colour + jitter),
    ``motion`` one of spec.MOTIONS and ``speed`` (normalised units per frame) for sequences."""

    kind: str
    colour: str
    cx: float
    cy: float
    size: float
    fill: tuple[int, int, int]
    motion: str = "still"
    speed: float = 0.0

    def half(self, width: int, height: int) -> tuple[float, float]:
        """Half the bounding box, normalised: (along x, along y)."""
        return half_box(self.size, width, height)

    def box(self, width: int, height: int) -> tuple[float, float, float, float]:
        """(x1, y1, x2, y2) normalised: what a detector would report."""
        hx, hy = self.half(width, height)
        return self.cx - hx, self.cy - hy, self.cx + hx, self.cy + hy

    def moved(self, frames: float) -> "Shape":
        """Where this shape is ``frames`` frames later (negative: earlier)."""
        dx, dy = _STEP[self.motion]
        d = self.speed * frames
        return Shape(self.kind, self.colour, self.cx + dx * d, self.cy + dy * d, self.size, self.fill, self.motion,
                     self.speed)


def half_box(size: float, width: int, height: int) -> tuple[float, float]:
    """Half the bounding box of a shape of ``size`` (its side over the frame's shorter side) in a width x height
    frame, normalised: (along x, along y)."""
    side = size * min(width, height)
    return side / 2 / width, side / 2 / height


_STEP = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1), "still": (0, 0)}  # unit move per frame


@dataclass(frozen=True)
class Background:
    kind: str  # spec.BACKGROUNDS
    base: tuple[int, int, int]  # RGB
    second: tuple[int, int, int]  # RGB, the other tone of gradient / checker / stripes
    period: int  # checker cell or stripe period, pixels
    angle: float  # radians: the direction of gradient and stripes
    noise_sigma: float


@dataclass(frozen=True)
class Scene:
    """One frame: width x height pixels, the shapes in drawing order (later on top), background, distractors."""

    width: int
    height: int
    shapes: tuple[Shape, ...]
    background: Background
    distractors: tuple[tuple, ...] = field(default=())  # ("line", x1, y1, x2, y2, thickness, grey) | ("speck", x, y, r, grey)

    def boxes(self) -> np.ndarray:
        """float32 [n_shapes, 4] normalised (x1, y1, x2, y2), clipped to the frame."""
        b = [s.box(self.width, self.height) for s in self.shapes]
        return np.clip(np.array(b, np.float32).reshape(-1, 4), 0.0, 1.0)


def overlap(a: Shape, b: Shape, width: int, height: int) -> float:
    """Intersection of the two bounding boxes over the smaller one's area."""
    ax1, ay1, ax2, ay2 = a.box(width, height)
    bx1, by1, bx2, by2 = b.box(width, height)
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    return inter / min((ax2 - ax1) * (ay2 - ay1), (bx2 - bx1) * (by2 - by1))


def near_band(s: Shape) -> tuple[bool, bool]:
    """(x near a third boundary, y near the path region's top edge): labels there would be ambiguous."""
    return (min(abs(s.cx - t) for t in spec.THIRDS) < spec.BAND, abs(s.cy - spec.PATH_REGION[2]) < spec.BAND)


def _grey_tone(rng: np.random.Generator, level: float) -> tuple[int, int, int]:
    return tuple(_byte(level + rng.integers(-spec.TINT, spec.TINT + 1)) for _ in range(3))


def sample_background(rng: np.random.Generator) -> Background:
    base_level = rng.uniform(*spec.GREY_RANGE)
    second_level = np.clip(base_level + rng.uniform(-spec.CONTRAST, spec.CONTRAST), 0, 255)
    kind = spec.BACKGROUNDS[rng.integers(len(spec.BACKGROUNDS))]
    period = int(rng.integers(*spec.CHECKER_CELL)) if kind == "checker" else int(rng.integers(*spec.STRIPE_PERIOD))
    return Background(kind, _grey_tone(rng, base_level), _grey_tone(rng, second_level), period,
                      float(rng.uniform(0, np.pi)), float(rng.uniform(*spec.NOISE_SIGMA)))


def sample_distractors(rng: np.random.Generator) -> tuple[tuple, ...]:
    out = []
    for _ in range(int(rng.integers(0, spec.MAX_DISTRACTORS + 1))):
        grey = int(rng.integers(*spec.DISTRACTOR_GREY))
        if rng.random() < 0.5:
            x1, y1, x2, y2 = rng.uniform(0, 1, 4)
            out.append(("line", float(x1), float(y1), float(x2), float(y2), int(rng.integers(1, 4)), grey))
        else:
            out.append(("speck", float(rng.uniform(0, 1)), float(rng.uniform(0, 1)), float(rng.uniform(0.01, 0.015)),
                        grey))
    return tuple(out)


_PAIRS = tuple((colour, kind) for colour in spec.COLOURS for kind in spec.SHAPES)  # colour-major


def _byte(v) -> int:
    """int(np.clip(v, 0, 255)) for one number, without numpy's per-call cost (the scene sampler's hot loop)."""
    return int(min(max(v, 0), 255))


def _fill(rng: np.random.Generator, colour: str) -> tuple[int, int, int]:
    j = spec.COLOUR_JITTER
    return tuple(_byte(c + rng.integers(-j, j + 1)) for c in spec.COLOURS[colour])


def _inside(s: Shape, width: int, height: int, margin: float = 0.0) -> bool:
    hx, hy = s.half(width, height)
    return (hx + margin <= s.cx <= 1 - hx - margin) and (hy + margin <= s.cy <= 1 - hy - margin)


def sample_shapes(rng: np.random.Generator, width: int, height: int, n: int, frames: int = 1,
                  path: bool | None = None, moving: bool = False, anchor_kind: str | None = None,
                  tries: int = 200, speed_range: tuple[float, float] = spec.SPEED_RANGE,
                  moves: tuple[float, ...] | None = None) -> tuple[Shape, ...] | None:
    """n shapes with distinct (colour, kind), every pair within MAX_OVERLAP and inside the frame in each of
    ``frames`` frames (the shapes given are where they are in the LAST frame), centres outside the label bands in
    the last frame. ``path``: True / False forces the path region occupied / clear in the last frame.
    ``moving``: draw a motion per shape; ``anchor_kind``: the first shape is the only one of this kind (the shape
    a colour or motion question names), and its last position keeps the longest possible travel away from every
    edge, whatever its motion. ``speed_range``: the moving shapes' speeds (a training curriculum may draw larger
    moves than the world's); ``moves``: weights of spec.MOTIONS for each shape's move (None: uniform, the world's).
    None when no layout was found in ``tries`` draws (the caller draws again)."""
    p = None if moves is None else np.asarray(moves, float) / sum(moves)
    kinds = len(spec.SHAPES)
    anchor = spec.SHAPES.index(anchor_kind) if anchor_kind is not None else None
    travel = (frames - 1) * speed_range[1]
    for _ in range(tries):
        order = rng.permutation(len(_PAIRS)).tolist()  # a random order of the (colour, kind) pairs
        if anchor is not None:  # the anchor kind's first pair, then the other kinds' pairs in order
            order = [next(c for c in order if c % kinds == anchor)] + [c for c in order if c % kinds != anchor]
        shapes = []
        for i, (colour, kind) in enumerate(_PAIRS[c] for c in order[:n]):
            size = float(rng.uniform(*spec.SIZE_RANGE))
            motion = (spec.MOTIONS[rng.integers(len(spec.MOTIONS)) if p is None else rng.choice(len(p), p=p)]
                      if moving else "still")
            speed = float(rng.uniform(*speed_range)) if motion != "still" else 0.0
            fill = _fill(rng, colour)
            hx, hy = half_box(size, width, height)
            margin = travel if (i == 0 and anchor_kind is not None) else 0.0
            if hx + margin > 0.5 - 1e-3 or hy + margin > 0.5 - 1e-3:
                break
            shapes.append(Shape(kind, colour, float(rng.uniform(hx + margin, 1 - hx - margin)),
                                float(rng.uniform(hy + margin, 1 - hy - margin)), size, fill, motion, speed))
        if len(shapes) != n or any(any(near_band(s)) for s in shapes):
            continue
        if not all(_inside(s.moved(-k), width, height) for s in shapes for k in range(frames)):
            continue
        if any(overlap(a.moved(-k), b.moved(-k), width, height) > spec.MAX_OVERLAP
               for k in range(frames) for i, a in enumerate(shapes) for b in shapes[i + 1:]):
            continue
        if path is not None and path_blocked(shapes) != path:
            continue
        return tuple(shapes)
    return None


def sample_size(rng: np.random.Generator) -> tuple[int, int]:
    return spec.FRAME_SIZES[rng.integers(len(spec.FRAME_SIZES))]


def sample_sequence(rng: np.random.Generator, frames: int = 1, n: int | None = None, path: bool | None = None,
                    anchor_kind: str | None = None, speed_range: tuple[float, float] = spec.SPEED_RANGE,
                    moves: tuple[float, ...] | None = None) -> list[Scene]:
    """``frames`` scenes of one camera (1: a still scene): same background and distractors, shapes moving at
    constant velocity. ``n``: number of shapes (default uniform in 1..MAX_SHAPES); ``path``: force the last
    frame's path region occupied / clear; ``anchor_kind``: a kind that must occur exactly once (the shape a
    motion or colour question names), placed so its last position does not reveal its motion. ``moves``: weights
    of spec.MOTIONS (sample_shapes; None: uniform)."""
    while True:
        width, height = sample_size(rng)
        count = n or int(rng.integers(1, spec.MAX_SHAPES + 1))
        shapes = sample_shapes(rng, width, height, count, frames, path, moving=frames > 1, anchor_kind=anchor_kind,
                               speed_range=speed_range, moves=moves)
        if shapes is None:
            continue
        background, distractors = sample_background(rng), sample_distractors(rng)
        order = rng.permutation(len(shapes))  # drawing order (who is on top) independent of the anchor
        last = tuple(shapes[i] for i in order)
        return [Scene(width, height, tuple(s.moved(k - frames + 1) for s in last), background, distractors)
                for k in range(frames)]


def path_blocked(shapes) -> bool:
    """True when a shape's centre lies in the path region (the lower centre of the view)."""
    x0, x1, y0, y1 = spec.PATH_REGION
    return any(x0 <= s.cx <= x1 and y0 <= s.cy <= y1 for s in shapes)


def third(cx: float) -> str:
    """left / centre / right of a normalised x."""
    return "left" if cx < spec.THIRDS[0] else "right" if cx > spec.THIRDS[1] else "centre"
