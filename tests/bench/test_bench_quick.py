"""`cobra-edge bench --quick` runs end to end and writes JSON of the documented schema (timings not asserted)."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO

pytest.importorskip("torch")
pytest.importorskip("transformers")


def test_bench_quick_writes_schema(tmp_path):
    """Also with --before: an artifact of the same preset exported apart is timed in the same rounds, and its greedy
    tokens (decoded by its step graph) and states are compared with the run's (decoded through the prefill graph)."""
    from bench.lm import _model_config
    from export.model import build_random
    from export.onnx_export import export_model

    before = tmp_path / "before"
    export_model(build_random(_model_config("bench-tiny"), seed=0), before, precisions=("fp32", "int8", "fp16"))
    r = subprocess.run([sys.executable, "-m", "edge.cli", "bench", "--quick", "--out", str(tmp_path),
                        "--before", f"bench-tiny={before}"], cwd=REPO,
                       capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "COBRA_EDGE_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    files = list(tmp_path.glob("lm-quick-*.json"))
    assert len(files) == 1 and str(files[0]) in r.stdout
    doc = json.loads(files[0].read_text())
    assert doc["schema"] == "cobra-edge-bench-lm/3" and doc["read_bandwidth_gb_s"] > 0
    assert {"cpu", "threads", "onnxruntime", "torch", "kernels", "cpu_flags"} <= set(doc["machine"])
    (p,) = doc["presets"]
    variants = {"onnx", "onnx_int8", "onnx_fp16", "onnx_int4"}
    decode = {"onnx_decode", "onnx_int8_decode", "onnx_int4_decode"}  # the runtime's: the prefill graph at L = 1
    for phase, contenders in (("prefill", variants | {"onnx_portable", "torch_ref", "hf"}),
                              ("step", variants | decode | {"onnx_bound", "onnx_int8_bound", "torch_ref", "hf"})):
        for B in ("1", "8"):
            row = p[phase][B]
            assert contenders <= set(row), (phase, B)
            for c in contenders:
                assert row[c]["median_ms"] > 0 and len(row[c]["runs_ms"]) >= 1
    assert "onnx_steps" in p["prefill"]["1"]
    assert {"before", "before_int8"} <= set(p["prefill"]["1"]) and "before_bound" in p["step"]["8"]
    for precision, tol in (("fp32", 1e-4), ("fp16", 2e-2), ("int8", 1e-4)):
        check = p["before_after"][precision]
        assert check["equal"] and check["tokens"] == 8, (precision, check)
        assert max(check["ssm_state_max_abs_diff"].values()) <= tol * max(1.0, check["ssm_state_max_abs"]), check
    assert set(p["step_floor_ms"]) == {"1", "8"} and min(p["step_floor_ms"].values()) > 0 and p["weight_bytes"] > 0
    assert min(p["read_bandwidth_in_step_rounds_gb_s"].values()) > 0 and doc["read_bandwidth_best_gb_s"] > 0
    assert p["ratios"]["step"]["1"]["onnx_over_floor"] > 0 and "b8_over_b1_onnx" in p["ratios"]["step"]
    assert p["ratios"]["step"]["1"]["onnx_int8_bound_speedup_vs_fp32"] > 0
    assert p["ratios"]["step"]["1"]["onnx_int4_decode_speedup_vs_fp32"] > 0 and "b8_over_b1_onnx_decode" in p["ratios"]["step"]
    assert set(p["variant_parity"]) == {"int8", "fp16", "int4"} and p["variant_parity"]["int8"]["step"]["logits"] > 0
    assert len(p["session_options"]["step"]) == 6 and len(p["session_options"]["prefill"]) == 6
    assert "hf_over_onnx" in p["ratios"]["prefill"]["1"] and "onnx_steps_over_onnx" in p["ratios"]["prefill"]["1"]
    assert "onnx_portable_over_onnx" in p["ratios"]["prefill"]["8"]
    assert "prefill" in r.stdout and "step floor" in r.stdout


def test_bench_connectors_quick_writes_table_and_schema(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edge.cli", "bench", "--connectors", "--quick", "--out", str(tmp_path)],
                       cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**__import__("os").environ, "COBRA_EDGE_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    (path,) = tmp_path.glob("connectors-quick-*.json")
    doc = json.loads(path.read_text())
    assert doc["schema"] == "cobra-edge-bench-connectors/1" and doc["prefill_backbone"] == "bench-tiny"
    rows = {row["projector"]: row for row in doc["rows"]}
    assert set(rows) == {"fused-gelu-mlp", "fused-ldpnet", "sva", "mg-conv-gate", "abstractor"}
    assert rows["fused-ldpnet"]["visual_tokens"] == 16 and rows["mg-conv-gate"]["visual_tokens"] == 64 + 3
    for row in rows.values():
        assert row["prefill_tokens"] == row["visual_tokens"] + 16
        assert row["projector_parameters"] > 0 and row["prefill_ms"]["median_ms"] > 0 and row["projector_ms"]["median_ms"] > 0
    assert r.stdout.count("\n| tiny") == 5 and "| design | visual tokens |" in r.stdout
