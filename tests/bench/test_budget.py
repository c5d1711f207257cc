"""bench/budget.py: exact weight bytes per precision (fp16 computed from the fp32 graphs equals an fp16 export),
Jetson fit against the reserve, and the table built from measurement JSONs (1 stream the larger of prefill and
frame peak, unmeasured stream counts computed and marked)."""

import json

from bench.budget import GiB, MiB, RESERVE, budget, fp16_weights, jetson_fit, markdown, weight_bytes
from edge.manifest import Manifest


def test_fp16_computed_equals_the_exported_variant(trained_artifact):
    exported = weight_bytes(trained_artifact)
    assert not exported["fp16"]["computed"]
    assert fp16_weights(Manifest.load(trained_artifact, verify_hashes=False)) == exported["fp16"]["weights"]
    assert exported["int8"]["weights"] < exported["fp16"]["weights"] < exported["fp32"]["weights"]


def test_jetson_fit_uses_the_reserve():
    assert jetson_fit(int(8e9) - RESERVE) == "Orin Nano 8GB"
    assert jetson_fit(int(8e9) - RESERVE + 1) == "Orin NX 16GB"
    assert jetson_fit(int(64e9)) is None
    assert jetson_fit(int(7e9), reserve=0) == "Orin Nano 8GB" and jetson_fit(int(7e9), reserve=2 * GiB) == "Orin NX 16GB"


def test_table_from_measurements(trained_artifact, tmp_path):
    memory = {"schema": "cobra-edge-bench-memory/1", "rows": [
        {"artifact": str(trained_artifact), "precision": "fp32", "rss_load": 100 * MiB, "rss_prefill": 120 * MiB,
         "streams": {"4": {"rss": 130 * MiB}}},
        {"artifact": str(trained_artifact), "precision": "int8", "error": "killed"}]}
    flagship = {"schema": "cobra-edge-bench-flagship/1", "artifact": str(trained_artifact),
                "runs": [{"precision": "fp32", "streams": 1, "rss_load": 99 * MiB, "rss_frames_peak": 125 * MiB}]}
    paths = []
    for i, doc in enumerate((memory, flagship)):
        paths.append(str(tmp_path / f"{i}.json"))
        (tmp_path / f"{i}.json").write_text(json.dumps(doc))
    rows = {r["precision"]: r for r in budget([str(trained_artifact)], paths)}
    fp32 = rows["fp32"]["resident"]
    state = rows["fp32"]["state_per_stream"]
    assert fp32["1"] == {"bytes": 125 * MiB, "how": "measured", "fits": "Orin Nano 8GB"}
    assert fp32["4"]["bytes"] == 130 * MiB and fp32["4"]["how"] == "measured"
    assert fp32["16"] == {"bytes": 125 * MiB + 15 * state, "how": "computed", "fits": "Orin Nano 8GB"}
    assert rows["int8"]["resident"] == {}  # its measurement failed: nothing made up
    fp16 = rows["fp16"]
    assert fp16["resident"]["1"]["how"] == "computed"
    assert fp16["resident"]["1"]["bytes"] == int(1.25 * fp16["weights"]) + 64 * MiB
    table = markdown(list(rows.values()))
    assert table.count("\n") == 1 + len(rows) and "(c)" in table
