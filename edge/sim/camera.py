"""The robot's camera: its forward view of the world as an ``edge.world.Scene`` (then pixels through
``edge.world.render``), and the exact truth of that view.

A pinhole camera at the robot's centre, ``mount_height`` m above the ground, looking along the heading and pitched
down (modelled as a shifted principal point: the horizon is drawn at normalised y = ``horizon``). For a body at depth
``d`` m (along the heading) and ``r`` m to the right of it, with f = (width / 2) / tan(hfov / 2) pixels:

    x = 0.5 + 0.5 * (r / d) / tan(hfov / 2)                             (normalised, 0 left .. 1 right)
    y = horizon + f * (mount_height - shape_size / 2) / d / height      (its centre, 0 top .. 1 bottom)
    size = f * shape_size / d / min(width, height)                      (spec's size: box side / shorter side)

Nearer bodies are drawn later (on top), so they occlude farther ones; bodies behind the near plane or wholly
outside the frame are not drawn. With the defaults a shape is 0.30 of the shorter side at 0.96 m and 0.16 at
1.8 m (the synthetic world's size range, edge/world/spec.py SIZE_RANGE), 0.10 at 2.9 m, and its centre crosses
y = 0.5 (the top of the path region of the "Is the path clear?" family) at a depth of 0.475 m: a gap of 0.2 m
from a 0.15 m robot to a 0.125 m shape. So "the path is blocked" means "a shape is within 0.2 m, ahead".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..world.render import render
from ..world.scene import Scene, Shape, path_blocked
from .world import Body, World


@dataclass(frozen=True)
class CameraConfig:
    """The camera: frame ``width`` x ``height`` pixels (one of the synthetic world's frame sizes), horizontal field of
    view ``hfov`` radians, mounted ``mount_height`` m above the ground, horizon at normalised y ``horizon``, bodies
    nearer than ``near`` m (depth) not drawn."""

    width: int = 320
    height: int = 240
    hfov: float = math.radians(60)
    mount_height: float = 0.228  # m
    horizon: float = 0.25
    near: float = 0.05  # m

    def __post_init__(self):
        if not (0 < self.hfov < math.pi):
            raise ValueError(f"CameraConfig.hfov must be in (0, pi) radians, got {self.hfov}")
        if self.width < 16 or self.height < 16:
            raise ValueError(f"CameraConfig frame must be at least 16 x 16 pixels, got {self.width} x {self.height}")

    @property
    def focal_px(self) -> float:
        return self.width / 2 / math.tan(self.hfov / 2)

    def image_x(self, bearing: float) -> float:
        """Normalised image x of a direction of normalised ``bearing`` (angle / half the FOV, right positive)."""
        return 0.5 + 0.5 * math.tan(bearing * self.hfov / 2) / math.tan(self.hfov / 2)


@dataclass(frozen=True)
class Truth:
    """What a frame shows, exactly (for the oracle, the tests and the report; model policies never read it).

    bearing: the target's direction / half the FOV (left negative; beyond +-1 out of view; not clipped).
    distance: the target's gap from the robot, m (surface to surface; 0 touching).
    visible: the target's centre is in the frame, in front of the camera, and not inside a nearer drawn shape's box.
    blocked: a drawn shape's centre lies in the lower centre of the view (spec.PATH_REGION: the "Is the path
    clear?" family's "no"); the target counts, as it does in that family: ahead and within 0.2 m it blocks too.
    """

    bearing: float
    distance: float
    visible: bool
    blocked: bool


@dataclass(frozen=True)
class View:
    """One frame's geometry (``scene``: what ``edge.world.render`` draws) and its truth."""

    scene: Scene
    truth: Truth
    drawn: tuple[Body, ...]  # the bodies in the scene, in drawing order (far to near)

    def frame(self, rng: np.random.Generator) -> np.ndarray:
        """The view's pixels, BGR uint8 [height, width, 3]; ``rng`` draws the sensor noise only."""
        return render(self.scene, rng)


def _relative(world: World, body: Body) -> tuple[float, float]:
    """(depth along the heading, offset to the right) of ``body``'s centre from the camera, m."""
    r = world.robot
    dx, dy = body.x - r.x, body.y - r.y
    c, s = math.cos(r.heading), math.sin(r.heading)
    return dx * c + dy * s, dx * s - dy * c


def look(world: World, camera: CameraConfig | None = None) -> View:
    """The robot's view now: the drawn shapes (far to near) as a Scene, and the truth."""
    cam = camera or CameraConfig()
    f, short = cam.focal_px, min(cam.width, cam.height)
    size_m = world.config.shape_size
    placed = []  # (depth, body, shape)
    for body in world.bodies:
        depth, right = _relative(world, body)
        if depth <= cam.near:
            continue
        size = f * size_m / depth / short
        cx = 0.5 + right * f / depth / cam.width
        cy = cam.horizon + f * (cam.mount_height - size_m / 2) / depth / cam.height
        shape = Shape(body.kind, body.colour, cx, cy, size, body.fill)
        x1, y1, x2, y2 = shape.box(cam.width, cam.height)
        if x2 <= 0 or x1 >= 1 or y2 <= 0 or y1 >= 1:
            continue
        placed.append((depth, body, shape))
    placed.sort(key=lambda p: -p[0])  # far to near: nearer shapes drawn on top
    shapes = tuple(p[2] for p in placed)
    scene = Scene(cam.width, cam.height, shapes, world.background)

    target = world.target
    depth, right = _relative(world, target)
    bearing = math.atan2(right, depth) / (cam.hfov / 2)
    visible = False
    for i, (d, body, shape) in enumerate(placed):
        if body is target:
            in_frame = 0.0 <= shape.cx <= 1.0 and 0.0 <= shape.cy <= 1.0
            covered = any(_inside(shape.cx, shape.cy, s.box(cam.width, cam.height)) for _, _, s in placed[i + 1:])
            visible = in_frame and not covered
    truth = Truth(float(bearing), float(world.gap(target)), visible, path_blocked(shapes))
    return View(scene, truth, tuple(p[1] for p in placed))


def _inside(x: float, y: float, box) -> bool:
    x1, y1, x2, y2 = box
    return x1 <= x <= x2 and y1 <= y <= y2


def apparent_size(distance_m: float, world_shape_size: float, camera: CameraConfig | None = None) -> float:
    """A shape's size (box side over the frame's shorter side, as in spec.SIZE_RANGE) at a depth of ``distance_m``."""
    cam = camera or CameraConfig()
    return cam.focal_px * world_shape_size / distance_m / min(cam.width, cam.height)


__all__ = ["CameraConfig", "Truth", "View", "apparent_size", "look"]
