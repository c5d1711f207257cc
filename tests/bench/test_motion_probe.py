"""bench/motion_probe.py: one row per shape per later frame, with the model's widths; the exact-centre control reads
every held-out move (so the labels are the shapes' own moves, row by row); the other probes score within [0, 1]."""

import pytest

pytest.importorskip("torch")


def test_motion_probe_rows_widths_and_control():
    from bench.motion_probe import FEATURES, run
    from export.weights import EMBEDDED, load_trained

    cfg = load_trained(EMBEDDED)[0].cfg
    doc = run(30, 20, None, steps=1000, say=lambda _m: None)
    d, cells = cfg.lm.d_model, cfg.num_visual_tokens
    assert set(doc["probes"]) == set(FEATURES)
    assert {f: p["features"] for f, p in doc["probes"].items()} == {"exact": 6, "vision": 2 * d + 2 * cells, "lm": d}
    assert doc["test_moves"] > 20 * 1 and doc["train_moves"] > 30  # at least one shape per later frame
    assert doc["probes"]["exact"]["held_out"] >= 0.95, doc["probes"]["exact"]
    assert all(0 <= p["held_out"] <= 1 and set(p["held_out_by_frames"]) <= {"2", "3", "4"}
               for p in doc["probes"].values())
