"""bench/motion_trial.py: a continuation of the embedded checkpoint on two-frame large-move motion items runs, and
its record names the parent, the distributions measured in both modes and where the new weights are."""

import json

import pytest

torch = pytest.importorskip("torch")


def test_a_short_trial_writes_its_record(tmp_path, monkeypatch):
    from bench.motion_trial import main
    from export.weights import EMBEDDED, sha256

    monkeypatch.setenv("COBRA_EDGE_CACHE", str(tmp_path / "cache"))
    assert main(["--weights", str(EMBEDDED), "--steps", "1", "--items", "2", "--per", "3", "--validate-per", "1",
                 "--name", "t", "--out", str(tmp_path / "out")]) == 0
    (path,) = (tmp_path / "out").glob("motion-trial-t-*.json")
    doc = json.loads(path.read_text())
    assert doc["weights"]["sha256"] == sha256(EMBEDDED)
    assert set(doc["accuracy"]) == {"trial/continuous", "trial/reset", "world/continuous", "world/reset"}
    assert all(v in (0.0, 1 / 3, 2 / 3, 1.0) for v in doc["accuracy"].values())
    assert doc["args"]["frames"] == [2, 2] and doc["curve"]["step"] == [1]
    runs = tmp_path / "cache" / "runs"  # outside the repository
    (weights,) = [w for w in runs.glob("motion-trial-*.safetensors") if not w.name.endswith(".dense.safetensors")]
    assert doc["trained_weights"] == str(weights)
    assert weights.with_suffix(".dense.safetensors").is_file()  # its dense head, for a next trial to keep
