"""cobra-edge loop --sim: the oracle's sweep writes JSON, Markdown and PNG; choose runs on an artifact; act on an
artifact without heads is a clear error naming it."""

import json

import pytest

from edge.cli import main


def test_loop_oracle_writes_json_markdown_and_png(tmp_path, capsys):
    out = tmp_path / "loop"
    rc = main(["loop", "--sim", "--policy", "oracle", "--episodes", "4", "--seed", "3", "--latency", "20",
               "--multipliers", "1", "8", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    paths = {p.suffix: p for p in out.iterdir()}
    assert set(paths) == {".json", ".md", ".png"}, sorted(out.iterdir())
    doc = json.loads(paths[".json"].read_text())
    assert doc["format"] == "cobra-edge-loop/1" and doc["seeds"] == [3, 4, 5, 6] and doc["artifact"] is None
    assert doc["latency"] == {**doc["latency"], "source": "fixed", "base_ms": 20.0, "multipliers": [1.0, 8.0]}
    assert len(doc["machine"]["load_average_before"]) == 3
    assert [(r["policy"], r["multiplier"], r["summary"]["latency_ms_median"]) for r in doc["runs"]] == [
        ("oracle", 1.0, 20.0), ("oracle", 8.0, 160.0)]
    assert len(doc["runs"][0]["episodes"]) == 4 and doc["world"]["v_max"] == 1.0
    assert "| oracle | - | 20 ms x8 | 160.0 |" in paths[".md"].read_text() and "| oracle | - | 20 ms x1 |" in printed
    assert paths[".png"].read_bytes()[:4] == b"\x89PNG"


def test_loop_choose_on_an_artifact_and_act_without_heads(tiny_artifact, tmp_path, capsys):
    rc = main(["loop", "--sim", str(tiny_artifact), "--policy", "choose", "oracle", "--episodes", "1",
               "--latency", "250", "--multipliers", "2", "--mode", "reset", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    doc = json.loads(next(tmp_path.glob("loop-choose-oracle-*.json")).read_text())
    assert [(r["policy"], r["mode"]) for r in doc["runs"]] == [("choose", "reset"), ("oracle", None)]
    assert doc["artifact"] == str(tiny_artifact) and doc["runs"][0]["summary"]["latency_ms_median"] == 500.0
    assert sum(doc["runs"][0]["policy_summary"]["chosen"].values()) == doc["runs"][0]["summary"]["ticks"]
    rc = main(["loop", "--sim", str(tiny_artifact), "--policy", "act", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and f"--policy act: artifact {tiny_artifact} cannot act" in err and "'heads'" in err, err


def test_loop_refuses_bad_options(capsys):
    for argv, words in ((["loop", "--policy", "oracle"], "--sim"), (["loop", "--sim", "--latency", "soon"], "measured"),
                        (["loop", "--sim", "--latency", "0"], "milliseconds > 0")):
        with pytest.raises(SystemExit) as e:  # argparse: exit 2 with the reason
            main(argv)
        assert e.value.code == 2 and words in capsys.readouterr().err, argv
    assert main(["loop", "--sim", "--policy", "oracle", "--prompt", "Find the {shape}"]) == 2
    assert "only {colour} and {kind} can be filled" in capsys.readouterr().err


def test_loop_with_the_oracle_runs_with_torch_blocked(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO
    from tests.test_no_torch import BLOCK_TORCH

    argv = ["loop", "--sim", "--policy", "oracle", "--episodes", "2", "--out", str(tmp_path)]
    code = BLOCK_TORCH + (f"from edge.cli import main\nrc = main({argv!r})\n"
                          "assert 'torch' not in sys.modules\nsys.exit(rc)\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "oracle: no model to time; its latency is 20 ms x multiplier" in r.stdout


def test_loop_time_scale_runs_the_world_faster_and_scales_the_oracles_latency(tmp_path, capsys):
    rc = main(["loop", "--sim", "--policy", "oracle", "--episodes", "2", "--multipliers", "1", "--time-scale", "8",
               "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert rc == 0, printed
    doc = json.loads(next(tmp_path.glob("loop-oracle-*.json")).read_text())
    assert (doc["world"]["v_max"], doc["world"]["w_max"], doc["world"]["timeout"]) == (8.0, 24.0, 0.625)
    assert doc["time_scale"] == 8.0 and doc["controller"]["turn_gain"] == 12.0
    assert doc["runs"][0]["summary"]["latency_ms_median"] == 2.5, "the oracle's 20 ms of the plain world, / 8"
    assert doc["runs"][0]["summary"]["success_rate"] == 1.0
    with pytest.raises(SystemExit):
        main(["loop", "--sim", "--policy", "oracle", "--time-scale", "0"])
