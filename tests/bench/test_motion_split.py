"""bench/motion_split.py: each item's cell flags agree with the geometry (computed here on their own), the buckets
partition the items, and a run writes its record."""

import json

import pytest

torch = pytest.importorskip("torch")


def _cell(s):
    return min(int(s.cy * 4), 3) * 4 + min(int(s.cx * 4), 3)


def test_rows_follow_the_geometry_and_buckets_partition_them(tmp_path):
    from bench.motion_split import SEED, TRAVEL, main, split_rows, summarise
    from edge.world import FAMILIES, make_item
    from export.tokenizer import prompt_tokenizer
    from export.weights import EMBEDDED, load_trained

    model, tj, _ = load_trained(EMBEDDED)
    rows = split_rows(model, prompt_tokenizer(tj, model.cfg), 6)
    for i, r in enumerate(rows):
        item = make_item("motion", (SEED, FAMILIES.index("motion"), i))
        kind = item.question.prompt.rstrip("?").split()[-2]  # "Which way is the <kind> moving?"
        shape = [[s for s in sc.shapes if s.kind == kind][0] for sc in item.scenes]
        assert r["answer"] == item.question.answer and r["frames"] == len(item.scenes)
        assert r["cell_changed_last"] == (_cell(shape[-2]) != _cell(shape[-1]))
        assert r["cell_changed_any"] == (_cell(shape[0]) != _cell(shape[-1]))
    made = [{"answer": "left", "said": "left", "frames": 2, "cell_changed_last": True, "cell_changed_any": True},
            {"answer": "up", "said": "down", "frames": 3, "cell_changed_last": False, "cell_changed_any": True},
            {"answer": "up", "said": "up", "frames": 3, "cell_changed_last": False, "cell_changed_any": False},
            {"answer": "still", "said": "left", "frames": 4, "cell_changed_last": False, "cell_changed_any": False}]
    s = summarise(made)
    assert s["all"] == {"accuracy": 0.5, "items": 4} and s["still"] == {"accuracy": 0.0, "items": 1}
    assert s["frames 3"] == {"accuracy": 0.5, "items": 2}
    moving = [k for k in s if k.startswith("moving")]
    assert sum(s[k]["items"] for k in moving) == 3
    assert s["said to moving items within one cell"] == {"up": 1}
    doc = main(["--items", "3", "--travel-per", "2", "--name", "t", "--out", str(tmp_path)])
    written = json.loads(next(tmp_path.glob("motion-split-t-*.json")).read_text())
    assert written["summary"]["all"]["items"] == 3 == len(doc["rows"])
    assert [(t["frames"], t["speed"]) for t in written["by_travel"]] == [(f[0], list(v)) for f, v in TRAVEL]
    for t in written["by_travel"]:
        assert t["travel"] == [round((t["frames"] - 1) * v, 3) for v in t["speed"]] and t["items"] == 2


def test_offset_error_reads_the_saved_dense_head(tmp_path):
    """A checkpoint trained with the dense term has its head beside it; the tokens' placing error is measured in
    widths of the view: positive, below a cell's width (the head reads a sigmoid within the cell)."""
    from bench.motion_split import offset_error
    from export.train import TrainOptions, dense_head_path, train

    result = train(TrainOptions.quick(dense_weight=1.0), tmp_path / "q.safetensors", say=lambda m: None, plot=False)
    err = offset_error(result.model, dense_head_path(result.weights), scenes=8)
    assert 0 < err["median"] <= err["p90"] <= 0.25 and err["scenes"] == 8
