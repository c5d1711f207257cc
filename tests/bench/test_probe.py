"""bench/probe.py: the stages' features have the model's widths, every probe scores within [0, 1], and a run
repeats exactly (seeded items and probes)."""

import pytest

pytest.importorskip("torch")


def test_probe_stages_widths_and_repeatability():
    from bench.probe import STAGES, run
    from export.weights import EMBEDDED, load_trained

    cfg = load_trained(EMBEDDED)[0].cfg
    a = run("colour", 24, 8, None, steps=5, say=lambda _m: None)
    b = run("colour", 24, 8, None, steps=5, say=lambda _m: None)
    d, T = cfg.lm.d_model, cfg.num_visual_tokens
    widths = {s: p["features"] for s, p in a["probes"].items()}
    assert set(widths) == set(STAGES)
    assert widths["lm_last"] == d and widths["lm_tokens"] == (T + 1) * d and widths["projector"] == T * d + d
    assert widths["pixels"] == 24 * 24 * 3 + d
    assert all(0 <= p["held_out"] <= 1 and 0 <= p["train"] <= 1 for p in a["probes"].values())
    assert 0 <= a["model_answer_accuracy"] <= 1 and a["answers"] == sorted(a["answers"])
    assert a["probes"] == b["probes"] and a["model_answer_accuracy"] == b["model_answer_accuracy"]
    with pytest.raises(ValueError, match="single-frame families"):
        run("motion", 4, 2, None, steps=1)
