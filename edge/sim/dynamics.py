"""The robot's motion: a unicycle (forward speed v m/s, turn rate w rad/s), integrated exactly over sub-steps
of at most ``WorldConfig.substep`` seconds, with a collision check after each, so a fast robot cannot pass
through a body between two checks (0.005 s at 1 m/s: 5 mm per step). Velocities change instantly (no
acceleration limit): the only lag in the loop is the model's latency, which is what the simulation measures.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .world import World


class Command(NamedTuple):
    """A velocity command: ``v`` m/s forward (>= 0), ``w`` rad/s counter-clockwise (positive turns left)."""

    v: float
    w: float

    @property
    def is_stop(self) -> bool:
        return self.v == 0.0 and self.w == 0.0


STOP = Command(0.0, 0.0)


def clip(command, world: World) -> Command:
    """The command within the robot's limits (0 <= v <= v_max, |w| <= w_max); a non-finite or malformed command
    is a ValueError naming it (a policy's bug must not drive the robot)."""
    try:
        v, w = (float(x) for x in command)
    except (TypeError, ValueError):
        raise ValueError(f"a policy returned {command!r}; expected (v m/s, w rad/s)") from None
    if not (math.isfinite(v) and math.isfinite(w)):
        raise ValueError(f"a policy returned a non-finite command (v={v}, w={w})")
    c = world.config
    return Command(min(max(v, 0.0), c.v_max), min(max(w, -c.w_max), c.w_max))


def advance(world: World, command: Command, duration: float) -> tuple[float, str | None]:
    """Move the robot under ``command`` for ``duration`` s (in place). -> (seconds actually moved, what it collided
    with or None): motion stops at the first sub-step that ends in a collision."""
    r = world.robot
    v, w = command
    if duration <= 0 or (v == 0.0 and w == 0.0):
        return max(duration, 0.0), None
    n = max(1, math.ceil(duration / world.config.substep - 1e-9))
    dt = duration / n
    for i in range(n):
        if abs(w) < 1e-9:
            r.x += v * dt * math.cos(r.heading)
            r.y += v * dt * math.sin(r.heading)
        else:  # an exact arc of radius v / w
            h1 = r.heading + w * dt
            r.x += v / w * (math.sin(h1) - math.sin(r.heading))
            r.y -= v / w * (math.cos(h1) - math.cos(r.heading))
            r.heading = h1
        hit = world.collision()
        if hit is not None:
            return (i + 1) * dt, hit
    r.heading = math.atan2(math.sin(r.heading), math.cos(r.heading))  # keep it in (-pi, pi]
    return duration, None
