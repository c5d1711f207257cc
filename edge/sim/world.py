"""The loop simulation's world: a flat square arena with a robot, one target shape, obstacles and distractors.

Units: metres and seconds. Glossary (used across edge/sim):
    x, y      arena coordinates, metres; the arena is [0, arena] x [0, arena], walls on its four sides
    heading   the robot's direction, radians, counter-clockwise from +x
    v, w      linear velocity (m/s, forward) and angular velocity (rad/s, counter-clockwise = turning left)
    gap       surface-to-surface distance between the robot's disc and a body's disc, metres (0: touching)
    bearing   a body's direction relative to the heading, divided by half the camera's horizontal field of view:
              0 straight ahead, -1 / +1 the left / right edge of the view (left negative), beyond +-1 out of view

Every shape is a billboard of side ``WorldConfig.shape_size`` standing on the ground (the camera always sees its
face; edge/sim/camera.py) whose footprint is a disc of radius ``shape_size / 2``; the robot is a disc of
``robot_radius``. Kinds and colours are the synthetic world's (edge/world/spec.py), so the rendered views look like
the scenes the embedded model was trained on. An episode's world is drawn from its seed alone
(``make_world(seed)``): the same seed gives the same world.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..world import spec
from ..world.scene import Background, sample_background


@dataclass(frozen=True)
class WorldConfig:
    """The world's constants (docs/loop.md says why each has its value: the world is built so latency matters).

    The numbers that make latency matter: the robot drives at ``v_max`` until the target's gap is under the
    controller's stop gap (edge/sim/policies.py) or the camera sees it in the path region (0.2 m here, by the
    camera's geometry), and must stop before touching it: a command decided on a frame applies from one latency
    after that frame until one latency after the next, so the robot overshoots by v_max x (1 to 2 latencies):
    0.02 to 0.04 m at 20 ms, 0.16 to 0.32 m at 160 ms, more than the 0.2 m it has. Obstacles flank the way to
    the target at 0.12 to 0.3 m of clearance, which a heading that oscillates under a delayed turn command eats up.
    """

    arena: float = 8.0  # side of the square arena, m; the robot starts at its centre
    robot_radius: float = 0.15  # m
    shape_size: float = 0.25  # side of every shape (billboard), m; its footprint is a disc of half this radius
    v_max: float = 1.0  # m/s: the robot's speed limit (forward only)
    w_max: float = 3.0  # rad/s: its turn-rate limit
    target_distance: tuple[float, float] = (2.0, 3.0)  # the target's centre from the robot's at the start, m
    target_bearing: float = math.radians(25)  # |angle| of the target from the start heading, at most (radians)
    obstacles: tuple[int, int] = (2, 4)  # obstacles flanking the straight way to the target, inclusive
    obstacle_along: tuple[float, float] = (0.25, 0.8)  # where along that way (fraction of the target's distance)
    obstacle_offset: tuple[float, float] = (0.4, 0.6)  # their centres' distance from the way's centre line, m
    distractors: tuple[int, int] = (0, 2)  # further shapes, off the way (inclusive)
    distractor_offset: tuple[float, float] = (1.2, 2.5)  # their distance from the way's centre line, m
    goal_gap: float = 0.45  # success: the robot stopped with the target's gap in (0, goal_gap], m
    timeout: float = 5.0  # simulated seconds per episode (the oracle's slowest success at 20 ms takes 2.8 s)
    substep: float = 0.005  # s: the motion is integrated (and collisions checked) in steps this long at most

    def __post_init__(self):
        for name in ("arena", "robot_radius", "shape_size", "v_max", "w_max", "goal_gap", "timeout", "substep"):
            if not (isinstance(getattr(self, name), (int, float)) and getattr(self, name) > 0):
                raise ValueError(f"WorldConfig.{name} must be a number > 0, got {getattr(self, name)!r}")

    @property
    def shape_radius(self) -> float:
        return self.shape_size / 2

    def faster(self, k: float) -> "WorldConfig":
        """The same world run ``k`` times faster: speed and turn-rate limits x k, the timeout and the integration
        step / k. An episode here at latency L is the episode of this world at latency k x L, in 1/k of its time
        (``Controller.faster`` scales the steering law alike). It lets a model whose tick is a few milliseconds meet
        the latencies at which this world's success falls (docs/loop.md, "Time scale")."""
        if not (isinstance(k, (int, float)) and math.isfinite(k) and k > 0):
            raise ValueError(f"time scale must be a finite number > 0, got {k!r}")
        return replace(self, v_max=self.v_max * k, w_max=self.w_max * k, timeout=self.timeout / k,
                       substep=self.substep / k)


@dataclass(frozen=True)
class Body:
    """A shape standing in the arena: ``kind`` in spec.SHAPES, ``colour`` in spec.COLOURS, centre (x, y) in m,
    footprint ``radius`` m, ``fill`` the RGB it is drawn with (colour + jitter, as the synthetic world draws),
    ``role`` "target" | "obstacle" | "distractor" (every body is solid: touching any is a collision)."""

    kind: str
    colour: str
    x: float
    y: float
    radius: float
    fill: tuple[int, int, int]
    role: str

    @property
    def name(self) -> str:
        return f"{self.colour} {self.kind}"


@dataclass
class Robot:
    """The robot's pose: (x, y) m, heading radians (counter-clockwise from +x)."""

    x: float
    y: float
    heading: float


@dataclass
class World:
    """One episode's world. ``bodies[0]`` is the target; ``robot`` moves (edge/sim/dynamics.py), nothing else does."""

    config: WorldConfig
    robot: Robot
    bodies: tuple[Body, ...]
    background: Background  # the ground and sky the camera sees behind the shapes (edge/world/scene.py)
    seed: int
    start: Robot = field(init=False)

    def __post_init__(self):
        self.start = Robot(self.robot.x, self.robot.y, self.robot.heading)

    @property
    def target(self) -> Body:
        return self.bodies[0]

    def gap(self, body: Body) -> float:
        """Surface-to-surface distance from the robot to ``body``, m (negative: overlapping)."""
        return math.hypot(body.x - self.robot.x, body.y - self.robot.y) - self.config.robot_radius - body.radius

    def collision(self) -> str | None:
        """What the robot's disc overlaps now: a body's name, "wall", or None."""
        r, c = self.robot, self.config
        for b in self.bodies:
            if self.gap(b) < 0:
                return b.name
        if min(r.x, r.y, c.arena - r.x, c.arena - r.y) < c.robot_radius:
            return "wall"
        return None


def _fill(rng: np.random.Generator, colour: str) -> tuple[int, int, int]:
    j = spec.COLOUR_JITTER
    return tuple(int(np.clip(ch + rng.integers(-j, j + 1), 0, 255)) for ch in spec.COLOURS[colour])


def make_world(seed: int, config: WorldConfig | None = None) -> World:
    """The world of episode ``seed``: the robot at the arena's centre with a random heading, the target ahead
    (within ``target_bearing`` of the heading, ``target_distance`` away), obstacles flanking the straight way to it
    (alternating sides, so the straight way stays clear by at least ``obstacle_offset[0]`` minus both radii) and
    distractors further off. Every (colour, kind) pair occurs once, as in the synthetic world's scenes."""
    config = config or WorldConfig()
    rng = np.random.default_rng([int(seed), 0x5111])  # 0x5111: this module's stream, apart from other seed users
    c = config
    robot = Robot(c.arena / 2, c.arena / 2, float(rng.uniform(-math.pi, math.pi)))
    pairs = [(col, kind) for col in spec.COLOURS for kind in spec.SHAPES]
    order = rng.permutation(len(pairs))
    names = iter(pairs[i] for i in order)
    rs = c.shape_radius

    dist = float(rng.uniform(*c.target_distance))
    angle = robot.heading + float(rng.uniform(-c.target_bearing, c.target_bearing))
    ux, uy = math.cos(angle), math.sin(angle)  # along the way to the target
    nx, ny = -uy, ux  # its left normal
    colour, kind = next(names)
    bodies = [Body(kind, colour, robot.x + dist * ux, robot.y + dist * uy, rs, _fill(rng, colour), "target")]

    def place(along: float, offset: float, role: str) -> bool:
        x, y = robot.x + along * ux + offset * nx, robot.y + along * uy + offset * ny
        if not (rs <= x <= c.arena - rs and rs <= y <= c.arena - rs):
            return False
        if any(math.hypot(x - b.x, y - b.y) < 2 * rs + 0.05 for b in bodies):
            return False
        if math.hypot(x - robot.x, y - robot.y) < c.robot_radius + rs + 0.2:
            return False
        colour, kind = next(names)
        bodies.append(Body(kind, colour, x, y, rs, _fill(rng, colour), role))
        return True

    side = 1 if rng.random() < 0.5 else -1
    for _ in range(int(rng.integers(c.obstacles[0], c.obstacles[1] + 1))):
        for _try in range(20):
            if place(dist * float(rng.uniform(*c.obstacle_along)), side * float(rng.uniform(*c.obstacle_offset)),
                     "obstacle"):
                break
        side = -side
    for _ in range(int(rng.integers(c.distractors[0], c.distractors[1] + 1))):
        for _try in range(20):
            s = 1 if rng.random() < 0.5 else -1
            if place(float(rng.uniform(0.3, 1.3)) * dist, s * float(rng.uniform(*c.distractor_offset)), "distractor"):
                break
    return World(config, robot, tuple(bodies), sample_background(rng), int(seed))
