"""Dense labels of a scene on a grid of cells: which (colour, kind) pairs each cell shows, and whose centre lies in
it. Training uses them as an auxiliary target on the visual tokens (export/train.py, ``dense_weight``): the tiny
encoders, trained from scratch, learn in a few hundred steps what real DINOv2 / SigLIP bring from pretraining,
that a region's colour belongs to the shape drawn there. Read from the geometry, so exact like every answer.

    present, centre, offset = cell_labels(scene, grid=4)   # [16, 21], [16, 21], [16, 21, 2]

Cells are rows of the square model input from the top left (the frame squashed to a square, as the runtime's
preprocessing does), so cell (r, c) covers normalised x in [c / grid, (c + 1) / grid), y likewise.
"""

from __future__ import annotations

import numpy as np

from . import spec
from .scene import Scene, Shape, path_blocked, third

PAIRS = tuple((colour, kind) for colour in spec.COLOURS for kind in spec.SHAPES)  # 21, colour-major


def pair_index(shape: Shape) -> int:
    return PAIRS.index((shape.colour, shape.kind))


def centre_cell(shape: Shape, grid: int) -> tuple[int, float, float]:
    """-> (the index of the cell holding the shape's centre, the centre's x and y within that cell, 0..1)."""
    gx, gy = min(max(shape.cx, 0.0), 1 - 1e-6) * grid, min(max(shape.cy, 0.0), 1 - 1e-6) * grid
    return int(gy) * grid + int(gx), gx - int(gx), gy - int(gy)


def inside(shape: Shape, x: np.ndarray, y: np.ndarray, width: int, height: int) -> np.ndarray:
    """bool mask: which normalised points (x, y) the shape covers (as drawn: circle, axis-aligned square,
    upright triangle filling its box)."""
    hx, hy = shape.half(width, height)
    dx, dy = (x - shape.cx) / hx, (y - shape.cy) / hy  # the bounding box is [-1, 1]^2
    if shape.kind == "circle":
        return dx * dx + dy * dy <= 1.0
    box = (np.abs(dx) <= 1.0) & (np.abs(dy) <= 1.0)
    if shape.kind == "square":
        return box
    return box & (np.abs(dx) <= (dy + 1.0) / 2.0)  # apex at dy = -1, base at dy = 1


def visible(scene: Scene, side: int) -> np.ndarray:
    """int64 [side, side]: the pair index visible at the centre of each of side x side points over the (squashed)
    frame, -1 for background; later shapes hide earlier ones, as drawn."""
    coords = (np.arange(side, dtype=np.float32) + 0.5) / side
    x, y = np.meshgrid(coords, coords)
    top = np.full((side, side), -1, np.int64)
    for s in scene.shapes:
        top[inside(s, x, y, scene.width, scene.height)] = pair_index(s)
    return top


def cell_labels(scene: Scene, grid: int, points: int = 6, min_cover: float = 0.05
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """-> present float32 [grid^2, 21] (the pair is visible on at least ``min_cover`` of the cell's
    ``points`` x ``points`` sample points, later shapes hiding earlier ones; in the cell of its centre, on any),
    centre float32 [grid^2, 21] (the
    pair's centre lies in the cell), offset float32 [grid^2, 21, 2] (that centre's (x, y) within the cell, 0..1;
    zero where centre is 0)."""
    n = grid * grid
    present = np.zeros((n, len(PAIRS)), np.float32)
    centre = np.zeros((n, len(PAIRS)), np.float32)
    offset = np.zeros((n, len(PAIRS), 2), np.float32)
    top = visible(scene, grid * points)
    cells = top.reshape(grid, points, grid, points).transpose(0, 2, 1, 3).reshape(n, points * points)
    for p in np.unique(top[top >= 0]):
        present[:, p] = (cells == p).mean(axis=1) >= min_cover
    for s in scene.shapes:
        c, fx, fy = centre_cell(s, grid)
        p = pair_index(s)
        centre[c, p] = 1.0
        present[c, p] = max(present[c, p], float((cells[c] == p).any()))
        offset[c, p] = (fx, fy)
    return present, centre, offset


def motion_labels(scenes: list[Scene], grid: int) -> np.ndarray:
    """int64 [frames, grid^2, 21]: in frames after the first, at the cell of each shape's centre, the index in
    spec.MOTIONS of the way it moves; -1 elsewhere and in the first frame (one frame cannot tell). What the LM's
    hidden states at a later frame's visual tokens can say only if the state carries the earlier frames."""
    out = np.full((len(scenes), grid * grid, len(PAIRS)), -1, np.int64)
    for k, scene in enumerate(scenes[1:], start=1):
        for s in scene.shapes:
            out[k, centre_cell(s, grid)[0], pair_index(s)] = spec.MOTIONS.index(s.motion)
    return out


def scene_summary(scene: Scene) -> tuple[np.ndarray, np.ndarray, int, float]:
    """What a question about ``scene`` can need, as targets: pairs float32 [21] (the pair is in the scene),
    thirds int64 [21] (0 / 1 / 2: left / centre / right of its centre; -1 when absent), the number of shapes minus
    one, and 1.0 when the path is blocked."""
    pairs = np.zeros(len(PAIRS), np.float32)
    thirds = np.full(len(PAIRS), -1, np.int64)
    for s in scene.shapes:
        pairs[pair_index(s)] = 1.0
        thirds[pair_index(s)] = ("left", "centre", "right").index(third(s.cx))
    return pairs, thirds, len(scene.shapes) - 1, float(path_blocked(scene.shapes))
