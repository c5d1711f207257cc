"""The synthetic world: deterministic per seed, and every family's answer equal to what the scene's geometry (and
its pixels) say, computed here independently of edge/world/questions.py. A wrong label would train a wrong model."""

import re

import numpy as np
import pytest

from edge.world import FAMILIES, ANSWERS, eval_items, make_item, spec
from edge.world.source import WorldSource
from tests.conftest import REPO

ITEMS = eval_items(seed=4242, per_family=40)


def _third(cx):
    return "left" if cx < 1 / 3 else ("right" if cx > 2 / 3 else "centre")


def _named(scene, prompt):
    """The shapes a prompt names: (colour or None, kind)."""
    words = prompt.rstrip("?").split()
    kind = next(w for w in words if w in spec.SHAPES)
    colour = next((w for w in words if w in spec.COLOURS), None)
    return [s for s in scene.shapes if s.kind == kind and (colour is None or s.colour == colour)], colour, kind


def _expected(item):
    """The answer to the item's question, from the geometry alone."""
    q, last = item.question, item.scenes[-1]
    if item.family == "count":
        return ("one", "two", "three", "four")[len(last.shapes) - 1]
    if item.family == "path":
        blocked = any(1 / 3 <= s.cx <= 2 / 3 and s.cy >= 0.5 for s in last.shapes)
        return "no" if blocked else "yes"
    shapes, colour, kind = _named(last, q.prompt)
    if item.family == "presence":
        return "yes" if shapes else "no"
    assert len(shapes) == 1, f"{q.prompt} names {len(shapes)} shapes"
    if item.family == "colour":
        return shapes[0].colour
    if item.family == "position":
        return _third(shapes[0].cx)
    first = [s for s in item.scenes[0].shapes if s.kind == kind]
    dx, dy = shapes[0].cx - first[0].cx, shapes[0].cy - first[0].cy
    if abs(dx) < 1e-9 and abs(dy) < 1e-9:
        return "still"
    return ("right" if dx > 0 else "left") if abs(dx) > abs(dy) else ("down" if dy > 0 else "up")


@pytest.mark.parametrize("family", FAMILIES)
def test_answers_match_the_geometry(family):
    items = [it for it in ITEMS if it.family == family]
    assert len(items) == 40
    for it in items:
        assert it.question.family == family and it.question.answer == _expected(it), it.question
    # answers span the family's answer set (balanced draws: 40 items see every answer)
    assert {it.question.answer for it in items} == set(ANSWERS[family])


def test_labels_keep_away_from_their_boundaries():
    for it in ITEMS:
        for s in it.scenes[-1].shapes:
            assert min(abs(s.cx - 1 / 3), abs(s.cx - 2 / 3)) >= spec.BAND and abs(s.cy - 0.5) >= spec.BAND


def test_pixels_agree_with_the_geometry():
    """The top shape's centre pixels are its named colour (nearest in the palette); shapes lie inside the frame."""
    for it in ITEMS[::5]:
        frame, scene = it.frames()[-1], it.scenes[-1]
        h, w = frame.shape[:2]
        assert (w, h) == (scene.width, scene.height) and frame.dtype == np.uint8
        top = scene.shapes[-1]
        x, y = int(top.cx * w), int(top.cy * h)
        rgb = frame[y - 1:y + 2, x - 1:x + 2].reshape(-1, 3)[:, ::-1].astype(float).mean(0)
        nearest = min(spec.COLOURS, key=lambda c: np.abs(np.array(spec.COLOURS[c]) - rgb).sum())
        assert nearest == top.colour, (it.question, rgb)
        assert np.all(np.abs(rgb - spec.COLOURS[top.colour]) <= spec.COLOUR_JITTER + 3 * spec.NOISE_SIGMA[1])
        for s in scene.shapes:
            x1, y1, x2, y2 = s.box(w, h)
            assert -1e-6 <= x1 and x2 <= 1 + 1e-6 and -1e-6 <= y1 and y2 <= 1 + 1e-6


def test_deterministic_per_seed():
    a, b = make_item("motion", (3, 5, 1)), make_item("motion", (3, 5, 1))
    assert a.questions == b.questions and a.scenes == b.scenes
    assert all(np.array_equal(x, y) for x, y in zip(a.frames(), b.frames()))
    c = make_item("motion", (3, 5, 2))
    assert c.scenes != a.scenes
    assert [it.question for it in eval_items(7, 3)] == [it.question for it in eval_items(7, 3)]
    s1, s2 = WorldSource(seed=2), WorldSource(seed=2)
    for _ in range(5):
        f1, _ = s1.read()
        f2, _ = s2.read()
        assert np.array_equal(f1, f2) and s1.question == s2.question and np.array_equal(s1.boxes, s2.boxes)


# sha256 of repr([(item.scenes, item.questions) for item in eval_items(1000, 10)]): the held-out items that every
# accuracy in bench/results was measured on (cobra-edge eval's seed 1000). A change to the sampler that draws other
# scenes for a seed (another order of random draws) changes what those numbers mean: it must be a conscious one,
# with this digest updated and the model measured again.
HELD_OUT_DIGEST = "3d946aaa3677b1ae9026443f0a65ed841c7e8e7a06d7898023ea9fabe33e608a"


def test_the_held_out_items_are_the_ones_measured():
    import hashlib

    drawn = repr([(item.scenes, item.questions) for item in eval_items(1000, 10)])
    assert hashlib.sha256(drawn.encode()).hexdigest() == HELD_OUT_DIGEST


def test_motion_items_hide_the_direction_in_their_last_frame():
    """The asked shape's last position keeps the longest travel away from every edge, whatever its direction; its
    earlier frames carry single-frame questions."""
    for it in (x for x in ITEMS if x.family == "motion"):
        assert 2 <= len(it.scenes) <= 4 and len(it.questions) == len(it.scenes)
        assert all(q.family != "motion" for q in it.questions[:-1])
        (shape,), _, _ = _named(it.scenes[-1], it.question.prompt)
        hx, hy = shape.half(it.scenes[-1].width, it.scenes[-1].height)
        travel = (len(it.scenes) - 1) * spec.SPEED_RANGE[1]
        assert hx + travel - 1e-9 <= shape.cx <= 1 - hx - travel + 1e-9
        assert hy + travel - 1e-9 <= shape.cy <= 1 - hy - travel + 1e-9


def test_motion_range_draws_larger_moves_and_the_default_draws_the_world():
    """A training curriculum's MotionRange: its frames and speeds are drawn, the answers still match the geometry
    and the direction stays hidden in the last frame; with no range (or the world's own) the items are exactly
    cobra-edge eval's."""
    from edge.world import MotionRange

    big = MotionRange(frames=(2, 2), speed=(0.2, 0.3))
    for i in range(30):
        plain = make_item("motion", (7, i))
        assert make_item("motion", (7, i), MotionRange()) == plain
        it = make_item("motion", (7, i), big)
        assert len(it.scenes) == 2 and it.question.answer == _expected(it)
        (last,), _, kind = _named(it.scenes[-1], it.question.prompt)
        first = next(s for s in it.scenes[0].shapes if s.kind == kind)
        moved = max(abs(last.cx - first.cx), abs(last.cy - first.cy))
        assert moved == 0.0 if it.question.answer == "still" else 0.2 - 1e-9 <= moved <= 0.3 + 1e-9
        hx, hy = last.half(it.scenes[-1].width, it.scenes[-1].height)
        assert hx + 0.3 - 1e-9 <= last.cx <= 1 - hx - 0.3 + 1e-9 and hy + 0.3 - 1e-9 <= last.cy <= 1 - hy - 0.3 + 1e-9
    with pytest.raises(ValueError, match="one frame cannot tell"):
        MotionRange(frames=(1, 2))
    with pytest.raises(ValueError, match="stay inside"):
        MotionRange(frames=(2, 4), speed=(0.2, 0.3))


def test_docs_state_the_distribution():
    doc = (REPO / "docs" / "world.md").read_text()
    for name, rgb in spec.COLOURS.items():
        assert re.search(rf"\| {name} \| \({rgb[0]}, {rgb[1]}, {rgb[2]}\) \|", doc), name
    for w, h in spec.FRAME_SIZES:
        assert f"{w}x{h}" in doc
    for number in (*spec.SIZE_RANGE, *spec.SPEED_RANGE, spec.MAX_OVERLAP, spec.BAND, spec.COLOUR_JITTER):
        assert f"{number:g}" in doc, number
    from edge.world import TEMPLATES

    for template in TEMPLATES.values():
        assert f"`{template}`" in doc


def test_question_weights_tilt_the_training_questions_and_name_bad_weights():
    """training_scene(weights=...): a family of weight 0 is never asked, a heavier family is asked more often than
    with the uniform draws; weights that are not one finite weight >= 0 per single-frame family are named."""
    from edge.world import SINGLE_FRAME, question_weights, training_scene

    def drawn(weights, n=60):
        rng = np.random.default_rng(7)
        return [training_scene(rng, 6, weights) for _ in range(n)]

    uniform = drawn(None)
    assert [q.prompt for q in training_scene(np.random.default_rng(7), 6)[1]] == [q.prompt for q in uniform[0][1]]
    only_count = drawn(question_weights({f: 0 for f in SINGLE_FRAME if f != "count"}))
    assert all([q.family for q in qs] == ["count"] for _, qs in only_count)  # count has a single prompt
    no_presence = drawn(question_weights({"presence": 0}))
    assert not any(q.family == "presence" for _, qs in no_presence for q in qs)
    share = {name: sum(q.family == "presence" for _, qs in d for q in qs) / sum(len(qs) for _, qs in d)
             for name, d in (("uniform", uniform), ("heavy", drawn(question_weights({"presence": 4}))))}
    assert share["heavy"] > share["uniform"] + 0.1, share
    assert {q.family for _, qs in uniform for q in qs} == set(SINGLE_FRAME)
    assert question_weights({"presence": 3}) == (1.0, 1.0, 1.0, 3.0, 1.0)
    with pytest.raises(ValueError, match="unknown single-frame family 'motion'"):
        question_weights({"motion": 2})
    with pytest.raises(ValueError, match="presence=-1.0 must be a finite weight >= 0"):
        question_weights({"presence": -1})
    with pytest.raises(ValueError, match="at least one single-frame family"):
        question_weights({f: 0 for f in SINGLE_FRAME})
    with pytest.raises(ValueError, match="3 given, one per single-frame family"):
        training_scene(np.random.default_rng(0), 6, (1.0, 2.0, 3.0))


def test_motion_items_weigh_their_moves():
    """MotionRange(moves=...) weighs spec.MOTIONS for every shape of a motion item (a training curriculum): unset
    (and the world's default) draws exactly the items evaluation draws; one move alone gives that move to every
    shape and as every answer; a heavier weight gives more of it; bad names and weights are named."""
    from edge.world import MotionRange, make_item, move_weights, spec

    def items(moves, n=200):
        return [make_item("motion", (5, 1, i), None if moves is None else MotionRange(moves=moves)) for i in range(n)]

    world = items(None, 20)
    assert [i.scenes for i in world] == [make_item("motion", (5, 1, i), MotionRange()).scenes for i in range(20)]
    only_up = items(move_weights({m: 0 for m in spec.MOTIONS if m != "up"}), 30)
    assert all(s.motion == "up" for i in only_up for s in i.scenes[-1].shapes)
    assert all(i.question.answer == "up" for i in only_up)
    assert all(b.cy < a.cy for i in only_up for a, b in zip(i.scenes[0].shapes, i.scenes[-1].shapes))
    share = {name: sum(i.question.answer == "still" for i in d) / len(d)
             for name, d in (("uniform", items(None)), ("heavy", items(move_weights({"still": 4}))))}
    assert share["heavy"] > share["uniform"] + 0.2, share
    assert move_weights({"up": 2, "still": 3}) == (1.0, 1.0, 2.0, 1.0, 3.0)
    with pytest.raises(ValueError, match="unknown move 'sideways'; known: left, right, up, down, still"):
        move_weights({"sideways": 2})
    with pytest.raises(ValueError, match="down=-1.0 must be a finite weight >= 0"):
        move_weights({"down": -1})
    with pytest.raises(ValueError, match="at least one move needs a weight"):
        MotionRange(moves=(0, 0, 0, 0, 0))
    with pytest.raises(ValueError, match="2 given, one per move expected"):
        MotionRange(moves=(1, 2))
