"""bench/draw_speed.py: a turn draws the same batches every time (the digest both contenders must share), and a
run against a baseline checkout records both contenders, their ratio and whether they drew the same batches."""

import json
import shutil

from tests.conftest import REPO


def test_a_turn_is_deterministic_and_a_run_compares_two_trees(tmp_path):
    from bench.draw_speed import child, main

    a, b = child("mixed", 1, 7), child("mixed", 1, 7)
    assert a["digest"] == b["digest"] and len(a["seconds"]) == 1 and a["seconds"][0] > 0
    assert child("mixed", 1, 8)["digest"] != a["digest"]
    base = tmp_path / "base"
    for part in ("edge", "export", "engines"):  # the world and the data recipe, as another checkout has them (no bench/)
        shutil.copytree(REPO / part, base / part, ignore=shutil.ignore_patterns("*.so", "__pycache__", "trained"))
    doc = main(["--baseline", str(base), "--rounds", "1", "--steps", "1", "--out", str(tmp_path / "res")])
    for row in doc["recipes"].values():
        assert row["same_batches"] is True and row["speedup_median"] > 0
        assert set(row) >= {"this tree", "baseline"}
    assert sorted(q.name for q in base.iterdir()) == ["edge", "engines", "export"]  # nothing written there
    written = json.loads(next((tmp_path / "res").glob("draw-speed-*.json")).read_text())
    assert written["recipes"].keys() == {"pretraining", "mixed", "wider-moves"}
