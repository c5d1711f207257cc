"""The simulated world and the camera: seeded worlds, views that agree with their truth (bearing, size, occlusion,
out of view, the path region), motion with collision checks."""

import math
from dataclasses import replace

import numpy as np
import pytest

from edge.sim.camera import CameraConfig, look
from edge.sim.dynamics import Command, advance, clip
from edge.sim.world import Body, World, WorldConfig, make_world
from edge.world import spec


def _facing(world: World, body: Body, gap: float | None = None) -> World:
    """The robot turned to face ``body`` (and moved to ``gap`` of it along the line, when given)."""
    r = world.robot
    r.heading = math.atan2(body.y - r.y, body.x - r.x)
    if gap is not None:
        d = world.config.robot_radius + body.radius + gap
        r.x, r.y = body.x - d * math.cos(r.heading), body.y - d * math.sin(r.heading)
    return world


def test_worlds_are_seeded_and_follow_the_spec():
    a, b, c = make_world(7), make_world(7), make_world(8)
    assert a.bodies == b.bodies and a.background == b.background and a.robot == b.robot
    assert a.bodies != c.bodies
    for seed in range(30):
        w = make_world(seed)
        pairs = [(x.colour, x.kind) for x in w.bodies]
        assert len(set(pairs)) == len(pairs), "every (colour, kind) once, as in the synthetic world"
        assert all(x.colour in spec.COLOURS and x.kind in spec.SHAPES for x in w.bodies)
        assert w.target.role == "target" and w.collision() is None
        lo, hi = w.config.target_distance
        assert lo - 1e-9 <= math.hypot(w.target.x - w.robot.x, w.target.y - w.robot.y) <= hi + 1e-9
        truth = look(w).truth
        assert truth.visible and abs(truth.bearing) <= 25 / 30 + 1e-9, "the target starts in view"


def test_the_drawn_target_sits_at_its_bearing_and_its_pixels_are_its_colour():
    cam = CameraConfig()
    for seed in range(10):
        w = make_world(seed)
        view = look(w, cam)
        i = view.drawn.index(w.target)
        shape = view.scene.shapes[i]
        print(f"seed {seed}: bearing {view.truth.bearing:+.3f} -> x {cam.image_x(view.truth.bearing):.4f}, "
              f"drawn at {shape.cx:.4f}")
        assert shape.cx == pytest.approx(cam.image_x(view.truth.bearing), abs=1e-9)
        assert (shape.kind, shape.colour) == (w.target.kind, w.target.colour)
        if view.truth.visible:  # its centre pixel is its fill (BGR), up to the sensor noise
            frame = view.frame(np.random.default_rng(0))
            px = frame[int(shape.cy * cam.height), int(shape.cx * cam.width)].astype(int)
            assert np.abs(px - np.array(w.target.fill[::-1])).max() <= 4 * w.background.noise_sigma + 2


def test_nearer_is_larger_and_lower_and_drawn_on_top():
    w = _facing(make_world(3), make_world(3).target, gap=2.0)
    sizes, ys = [], []
    for gap in (2.0, 1.2, 0.6, 0.3):
        _facing(w, w.target, gap)
        view = look(w)
        s = view.scene.shapes[view.drawn.index(w.target)]
        sizes.append(s.size)
        ys.append(s.cy)
        drawn_sizes = [x.size for x in view.scene.shapes]  # every shape is as big: size is 1 / depth
        assert drawn_sizes == sorted(drawn_sizes), "drawn far to near, so nearer shapes are on top"
    assert sizes == sorted(sizes) and ys == sorted(ys), (sizes, ys)
    depths = [w.config.robot_radius + w.target.radius + g for g in (2.0, 1.2, 0.6, 0.3)]
    assert sizes[0] == pytest.approx(CameraConfig().focal_px * w.config.shape_size / depths[0] / 240)
    _facing(w, w.target, 1.05)  # 1.33 m deep: within the synthetic world's size range
    view = look(w)
    s = view.scene.shapes[view.drawn.index(w.target)]
    assert spec.SIZE_RANGE[0] <= s.size <= spec.SIZE_RANGE[1]


def test_out_of_view_and_behind_are_not_drawn():
    w = make_world(5)
    w.robot.heading += math.pi  # the target behind
    view = look(w)
    assert w.target not in view.drawn and not view.truth.visible and abs(view.truth.bearing) > 1
    w.robot.heading -= math.pi / 2  # the target 90 degrees to one side
    view = look(w)
    assert w.target not in view.drawn and abs(view.truth.bearing) == pytest.approx(3.0, abs=0.9)


def test_a_nearer_shape_occludes_the_target():
    w = make_world(2)
    _facing(w, w.target)
    t, r = w.target, w.robot
    mid = Body("square", "green" if t.colour != "green" else "red", (t.x + r.x) / 2, (t.y + r.y) / 2, t.radius,
               (30, 170, 50), "obstacle")
    w.bodies = (t, mid)
    view = look(w)
    assert view.drawn == (t, mid) and not view.truth.visible, "drawn far to near: the nearer square covers it"


def test_the_path_region_is_within_two_tenths_of_a_metre_ahead():
    w = make_world(4)
    w.bodies = (w.target,)
    for gap, blocked in ((0.15, True), (0.19, True), (0.25, False), (1.0, False)):
        _facing(w, w.target, gap)
        assert look(w).truth.blocked is blocked, gap
    _facing(w, w.target, 0.15)
    w.robot.heading += 0.4  # close but off to the side: not in the lower centre
    assert look(w).truth.blocked is False


def test_driving_into_an_obstacle_stops_at_contact():
    w = make_world(1)
    obstacle = next(b for b in w.bodies if b.role == "obstacle")
    _facing(w, obstacle)
    moved, hit = advance(w, Command(1.0, 0.0), 10.0)
    assert hit == obstacle.name and moved < 10.0
    assert -w.config.v_max * w.config.substep <= w.gap(obstacle) < 0


def test_commands_are_clipped_and_bad_ones_refused():
    w = make_world(0)
    c = w.config
    assert clip((5.0, -9.0), w) == Command(c.v_max, -c.w_max) and clip((-1, 0), w) == Command(0.0, 0.0)
    for bad in ((math.nan, 0.0), "ahead", (1.0,)):
        with pytest.raises(ValueError, match="a policy returned"):
            clip(bad, w)
    with pytest.raises(ValueError, match="WorldConfig.v_max"):
        replace(WorldConfig(), v_max=0)
