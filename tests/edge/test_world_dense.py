"""The dense cell labels training reads (edge/world/dense.py) agree with the rendered pixels and the geometry: a
wrong label would teach the encoders a wrong binding."""

from dataclasses import replace

import numpy as np

from edge.world import eval_items, render, spec
from edge.world.dense import PAIRS, cell_labels, visible

ITEMS = eval_items(seed=5151, per_family=12)


def _nearest_pair_colour(rgb: np.ndarray) -> np.ndarray:
    """[..., 3] RGB -> index into spec.COLOURS of the nearest palette colour."""
    palette = np.array(list(spec.COLOURS.values()), float)
    return np.abs(rgb[..., None, :] - palette).sum(-1).argmin(-1)


def test_visible_map_matches_the_rendered_pixels():
    """Render without sensor noise, squash to a side x side grid by sampling the pixel at each point: where the
    map names a pair, the pixel is that pair's colour (bar anti-aliased edges); where it says background, no
    shape's fill is there."""
    side, agree, total = 48, 0, 0
    colours = list(spec.COLOURS)
    for it in ITEMS:
        scene = it.scenes[-1]
        scene = replace(scene, background=replace(scene.background, noise_sigma=0.0), distractors=())
        frame = render(scene, np.random.default_rng(0))[:, :, ::-1].astype(float)  # RGB
        h, w = frame.shape[:2]
        top = visible(scene, side)
        ys = ((np.arange(side) + 0.5) / side * h).astype(int)
        xs = ((np.arange(side) + 0.5) / side * w).astype(int)
        pix = frame[ys][:, xs]  # [side, side, 3]
        fills = {PAIRS.index((s.colour, s.kind)): np.array(s.fill, float) for s in scene.shapes}
        for (r, c), p in np.ndenumerate(top):
            total += 1
            if p >= 0:
                agree += np.abs(pix[r, c] - fills[p]).max() <= 3 and colours[_nearest_pair_colour(pix[r, c])] == PAIRS[p][0]
            else:
                agree += all(np.abs(pix[r, c] - f).max() > 3 for f in fills.values())
    assert agree / total >= 0.985, agree / total


def test_cell_labels_follow_the_geometry():
    for it in ITEMS:
        scene = it.scenes[-1]
        present, centre, offset = cell_labels(scene, grid=4)
        assert present.shape == centre.shape == (16, 21) and offset.shape == (16, 21, 2)
        assert centre.sum() == len(scene.shapes)
        for s in scene.shapes:
            p = PAIRS.index((s.colour, s.kind))
            cell = int(np.flatnonzero(centre[:, p])[0])
            r, c = divmod(cell, 4)
            np.testing.assert_allclose((c + offset[cell, p, 0]) / 4, s.cx, atol=1e-5)
            np.testing.assert_allclose((r + offset[cell, p, 1]) / 4, s.cy, atol=1e-5)
            # a shape is at least 0.16 of the shorter side: wherever it is not hidden, its centre cell shows it
            shown = (visible(scene, 24).reshape(4, 6, 4, 6).transpose(0, 2, 1, 3).reshape(16, 36)[cell] == p).any()
            assert present[cell, p] == float(shown)
            assert present[:, p].sum() >= 1 or not (visible(scene, 24) == p).any()
        # pairs not in the scene are nowhere
        absent = [i for i in range(21) if PAIRS[i] not in {(s.colour, s.kind) for s in scene.shapes}]
        assert present[:, absent].sum() == 0 and centre[:, absent].sum() == 0


def test_cell_labels_are_what_training_batches_carry():
    from export.train_data import DataRecipe, draw_batch

    b = draw_batch(DataRecipe(scenes=3, questions=2, sequences=1, dense_grid=4), seed=0, step=5)
    frames = 3 + len(b.seq_pixels[0])
    assert b.dense is not None and len(b.dense) == frames
    plain = draw_batch(DataRecipe(scenes=3, questions=2, sequences=1), seed=0, step=5)
    assert plain.dense is None and np.array_equal(plain.pixels, b.pixels) and plain.qa == b.qa  # same data
    assert all(p.shape == (16, 21) and p.sum() >= 1 for p, _, _ in b.dense)


def test_mirrored_labels_are_the_mirrored_scenes_labels():
    """Labels of the mirrored pixels equal the labels of the scene mirrored in its geometry."""
    from export.train_dense import mirrored

    for it in ITEMS[::7]:
        scene = it.scenes[-1]
        flipped = replace(scene, shapes=tuple(replace(s, cx=1.0 - s.cx) for s in scene.shapes))
        _, (got,) = mirrored(np.zeros((1, 4, 4, 3), np.uint8), [cell_labels(scene, 4)], 4)
        want = cell_labels(flipped, 4)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_allclose(got[2], want[2], atol=1e-5)
        assert np.abs(got[0] - want[0]).mean() < 0.02  # sample points are symmetric; coverage ties may differ


def test_scene_summary_follows_the_geometry():
    from edge.world.dense import scene_summary

    for it in ITEMS:
        scene = it.scenes[-1]
        pairs, thirds, count, path = scene_summary(scene)
        assert pairs.sum() == len(scene.shapes) == count + 1
        assert path == float(any(1 / 3 <= s.cx <= 2 / 3 and s.cy >= 0.5 for s in scene.shapes))
        for s in scene.shapes:
            p = PAIRS.index((s.colour, s.kind))
            assert pairs[p] == 1 and thirds[p] == (0 if s.cx < 1 / 3 else 2 if s.cx > 2 / 3 else 1)
        assert (thirds >= 0).sum() == len(scene.shapes)


def test_motion_labels_sit_at_later_frames_centre_cells():
    from edge.world.dense import motion_labels

    for it in [i for i in ITEMS if i.family == "motion"]:
        labels = motion_labels(list(it.scenes), 4)
        assert labels.shape == (len(it.scenes), 16, 21) and (labels[0] == -1).all()
        for k, scene in enumerate(it.scenes[1:], start=1):
            assert (labels[k] >= 0).sum() == len(scene.shapes)
            for s in scene.shapes:
                cell = min(int(s.cy * 4), 3) * 4 + min(int(s.cx * 4), 3)
                assert labels[k, cell, PAIRS.index((s.colour, s.kind))] == spec.MOTIONS.index(s.motion)
