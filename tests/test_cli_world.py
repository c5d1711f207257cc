"""The command line of the trained model: random-weight warnings, the manifest's weight source through inspect,
run --synthetic with the truth beside each answer, bench without transformers, defaults in help."""

import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO


def _cli(*args, env=None, timeout=300, prefix=""):
    code = prefix + "import sys\nfrom edge.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


def test_random_weights_warn_and_inspect_says_so(tiny_artifact, tmp_path):
    pytest.importorskip("torch")
    r = _cli("export", "--preset", "tiny-ldp", "--out", str(tmp_path / "r"))
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("random weights: every answer will be noise") == 1
    r = _cli("inspect", str(tmp_path / "r"))
    assert r.returncode == 0 and "weights    random (seed 0): answers are noise" in r.stdout, r.stdout
    r = _cli("run", str(tmp_path / "r"), "--synthetic", "--streams", "1", "--frames", "1")
    assert r.returncode == 0 and "random weights: every answer will be noise" in r.stderr


def test_trained_weights_round_trip_through_inspect(trained_artifact):
    import json

    from export.weights import EMBEDDED, sha256

    weights = json.loads((trained_artifact / "manifest.json").read_text())["weights_source"]
    record = json.loads(EMBEDDED.with_suffix(".json").read_text())
    assert weights["source"] == "trained" and weights["sha256"] == sha256(EMBEDDED)
    assert weights["record"]["seed"] == record["seed"] and weights["record"]["steps"] == record["steps"]
    r = _cli("inspect", str(trained_artifact))
    assert r.returncode == 0, r.stderr
    stages = record.get("stages")
    if stages:  # the curriculum (export/train_recipe.py): the last stage continued the ones before it
        assert (f"weights    trained: {record['model']}, seed {record['seed']}, {len(stages)} stages "
                f"({', '.join(stages)}), {record['minutes_in_all']} min in all; the last {record['steps']} steps"
                in r.stdout), r.stdout
    else:
        assert f"weights    trained: {record['model']}, seed {record['seed']}, {record['steps']} steps" in r.stdout
    heads = json.loads((trained_artifact / "manifest.json").read_text())["heads"]
    assert heads["source"]["source"] == "trained" and "head target" in r.stdout and "distance [0, 4] m" in r.stdout
    assert "random weights" not in r.stderr


def test_run_synthetic_prints_the_truth_and_the_accuracy(trained_artifact):
    r = _cli("run", str(trained_artifact), "--synthetic", "--streams", "2", "--frames", "3")
    assert r.returncode == 0, r.stderr
    lines = [line for line in r.stdout.splitlines() if line.startswith("cam")]
    assert len(lines) == 6 and all(" truth '" in line and "?)" in line for line in lines), r.stdout
    assert "accuracy: " in r.stdout and " of 6 answers equal the scene's exact answer" in r.stdout
    assert "random weights" not in r.stderr


def test_bench_without_transformers_is_a_clear_error(tmp_path):
    pytest.importorskip("torch")
    block = textwrap.dedent("""
        class _No:
            def find_spec(self, name, path=None, target=None):
                if name == "transformers" or name.startswith("transformers."):
                    raise ImportError("transformers is blocked in this test")
        import sys
        sys.meta_path.insert(0, _No())
    """)
    r = _cli("bench", "--quick", "--out", str(tmp_path), prefix=block)
    assert r.returncode != 0 and "ModuleNotFoundError" not in r.stderr
    assert "transformers, which is not installed" in r.stderr and "'.[export,bench]'" in r.stderr


def test_help_shows_defaults_and_bad_counts_are_named():
    r = _cli("eval", "--help")
    assert r.returncode == 0 and "(default: 8)" in r.stdout and "(default: 500)" in r.stdout
    r = _cli("run", "--help")
    assert "(default: 4)" in r.stdout and "(default: 2)" in r.stdout
    r = _cli("eval", "x", "--batch", "0")
    assert r.returncode == 2 and "--batch" in r.stderr and "integer >= 1" in r.stderr
    r = _cli("eval")
    assert r.returncode == 2 and "give an artifact directory or --preset" in r.stderr
