"""The memory budget table: per artifact and precision, the weights the runtime holds, the state per stream, the
resident memory with 1, 4 and 16 streams, the artifact's size, and the smallest Jetson Orin it fits.

    python -m bench.budget ARTIFACT [ARTIFACT ...] --measured bench/results/memory-*.json \
        bench/results/flagship-*.json --out bench/results

Bytes of weights and state are exact (read from the graphs' external references and the manifest's state spec,
no model loaded). Resident memory is taken from the measurements given (``bench.memory``: after a 761-token
prefill at B = 1 and with n streams' states plus a prefill of n x 761 tokens at once; ``bench.flagship``: the peak
during a whole frame, vision encoders included); what was not measured is computed and marked so:

- fp16, which ONNX Runtime's CPU provider runs by upcasting its weights to float32 (so a CPU measurement says
  nothing about a GPU): its weights are the fp32 graphs' outside the LM (vision, projector, embed) plus the LM
  graph's float32 tensors at two bytes each, exactly as ``export --precision fp16`` writes them; its resident
  memory is computed as the floor set for the other precisions, 1.25 x weights + 64 MiB, plus what n streams added
  to the fp32 measurement (their states and a batch's activations);
- "int4, vision fp16" (artifacts with vision encoders, which every variant keeps in float32): what a GPU running
  the int4 language model beside fp16 vision encoders would hold; the int4 measurements less half the vision
  graph's float32 bytes;
- n streams not measured: the 1-stream figure + what n streams added to another precision of the same model
  (their states and a batch's activations, which are float32 at every precision), or, where none was measured,
  + (n - 1) x state (frames answered one at a time).

A Jetson fits when its memory, less a reserve for everything else on the board, holds the resident figure and the
load's measured peak (computed rows: the resident figure only).
"""

from __future__ import annotations

import argparse
import glob
import json
import time
from pathlib import Path

from bench.memory import artifact_sizes, weight_regions

MiB = 1 << 20
GiB = 1 << 30
SCHEMA = "cobra-edge-bench-budget/1"
# Jetson Orin modules by memory (LPDDR5 shared by CPU and GPU), in decimal gigabytes as sold.
JETSONS = (("Orin Nano 8GB", 8e9), ("Orin NX 16GB", 16e9), ("AGX Orin 32GB", 32e9), ("AGX Orin 64GB", 64e9))
# What the board needs besides cobra-edge: L4T without a desktop (~0.8 GiB), the CUDA / cuDNN / TensorRT
# context and libraries (~1.0 GiB), a camera pipeline (Argus / GStreamer capture rings and colour conversion
# for two 1080p cameras, ~0.5 GiB) and headroom against the kernel's OOM killer (~0.2 GiB).
RESERVE = int(2.5 * GiB)
STREAMS = (1, 4, 16)
INT4_FP16_VISION = "int4, vision fp16"


def fp16_weights(manifest) -> int:
    """Exact bytes an fp16 variant of this artifact holds, from its fp32 graphs: the graphs outside the LM as they
    are; in the LM graph the matrices (the projections and the tied embedding / LM head) at two bytes, the float32
    islands' small tensors (norms, D, dt bias, conv weights, A) kept float32, as ``export --precision fp16`` writes
    them (the exporter folds their casts back)."""
    from export.precision import VARIANT_GRAPHS

    graphs = manifest.graphs_for("fp32")
    kept = weight_regions({k: v for k, v in graphs.items() if k not in VARIANT_GRAPHS})
    halved = weight_regions({k: v for k, v in graphs.items() if k in VARIANT_GRAPHS})
    matrix = ("proj.weight", "lm_head.weight", "embedding.weight")
    return (sum(n for n, *_ in kept.values())
            + sum(n // 2 if dtype == "float32" and name.endswith(matrix) else n for n, dtype, name in halved.values()))


def weight_bytes(directory: Path) -> dict[str, dict]:
    """Per precision the runtime can load: exact bytes of the distinct weights its graphs read; fp16 computed
    from the fp32 graphs where it was not exported."""
    from edge.manifest import Manifest

    m = Manifest.load(directory, verify_hashes=False)
    result = {p: {"weights": sum(n for n, *_ in weight_regions(m.graphs_for(p)).values()), "computed": False}
              for p in m.precisions}
    if "fp16" not in result:
        result["fp16"] = {"weights": fp16_weights(m), "computed": True}
    if "int4" in result and m.has_vision:  # what a GPU would hold: the int4 LM beside vision encoders in fp16
        vision = weight_regions({"vision": m.graphs["vision"]})
        saved = sum(n // 2 for n, dtype, _ in vision.values() if dtype == "float32")
        result[INT4_FP16_VISION] = {"weights": result["int4"]["weights"] - saved, "computed": True, "saved": saved,
                                    "from": "int4"}
    return result


def jetson_fit(resident: int, reserve: int = RESERVE) -> str | None:
    """The smallest Jetson Orin whose memory less ``reserve`` holds ``resident`` bytes; None if none does."""
    for name, size in JETSONS:
        if resident + reserve <= size:
            return name
    return None


def measured(paths: list[str]) -> dict[tuple[str, str], dict]:
    """(artifact directory, precision) -> {"1": rss, "4": rss, ...} from bench.memory and bench.flagship JSONs; the
    latest file wins, and for 1 stream the larger of the prefill and the whole-frame peak."""
    out: dict[tuple[str, str], dict] = {}
    for path in sorted(paths):
        doc = json.loads(Path(path).read_text())
        if doc.get("schema", "").startswith("cobra-edge-bench-memory"):
            for row in doc["rows"]:
                if "error" in row:
                    continue
                rec = out.setdefault((str(Path(row["artifact"]).resolve()), row["precision"]), {})
                rec["load"] = row["rss_load"]
                if "rss_load_peak" in row:
                    rec["load_peak"] = row["rss_load_peak"]
                rec["1"] = max(rec.get("1", 0), row["rss_prefill"])
                for n, s in row.get("streams", {}).items():
                    rec[n] = s["rss"]
        elif doc.get("schema", "").startswith("cobra-edge-bench-flagship"):
            for row in doc["runs"]:
                if "error" in row:
                    continue
                rec = out.setdefault((str(Path(doc["artifact"]).resolve()), row["precision"]), {})
                rec.setdefault("load", row["rss_load"])
                rec["load_peak"] = row["rss_load_peak"]
                rec[str(row["streams"])] = max(rec.get(str(row["streams"]), 0), row["rss_frames_peak"])
    return out


def budget(artifacts: list[str], measured_paths: list[str], reserve: int = RESERVE) -> list[dict]:
    from edge.manifest import Manifest

    meas = measured(measured_paths)
    rows = []
    for directory in artifacts:
        d = Path(directory)
        m = Manifest.load(d, verify_hashes=False)
        state = m.state.bytes_per_stream
        size = artifact_sizes(d)["artifact_bytes"]
        added = {}  # n -> what n streams (states and a batch's activations, float32 at every precision) added
        for other in ("fp32", "int8", "int4"):
            rec = meas.get((str(d.resolve()), other), {})
            for n in STREAMS[1:]:
                if str(n) in rec and "1" in rec and str(n) not in added:
                    added[str(n)] = rec[str(n)] - rec["1"]
        for precision, w in weight_bytes(d).items():
            rec = meas.get((str(d.resolve()), precision), {})
            row = {"artifact": str(d), "model": m.model["name"], "precision": precision, "weights": w["weights"],
                   "weights_computed": w["computed"], "state_per_stream": state,
                   "artifact_bytes": None if w["computed"] else size, "rss_load": rec.get("load"), "resident": {}}
            peak = rec.get("load_peak") if "from" not in w and precision != "fp16" else None
            row["rss_load_peak"] = peak
            base, ref = rec.get("1"), {}
            if "from" in w:  # the int4 measurement less the bytes fp16 vision encoders would save
                ref = meas.get((str(d.resolve()), w["from"]), {})
                base = None if "1" not in ref else ref["1"] - w["saved"]
                how = "computed"
            elif precision == "fp16":  # the CPU provider upcasts fp16 weights: a CPU measurement is not a GPU's
                ref = meas.get((str(d.resolve()), "fp32"), {})
                base, how = int(1.25 * w["weights"]) + 64 * MiB, "computed"
            else:
                how = "measured" if base is not None else None
            for n in STREAMS:
                if base is None:
                    continue
                if how == "measured" and str(n) in rec:
                    row["resident"][str(n)] = {"bytes": rec[str(n)], "how": "measured"}
                elif str(n) in ref and "1" in ref:  # what n streams added to the precision it is derived from
                    row["resident"][str(n)] = {"bytes": base + ref[str(n)] - ref["1"], "how": "computed"}
                elif added.get(str(n)) is not None:  # what n streams added to another precision of this model
                    row["resident"][str(n)] = {"bytes": base + added[str(n)], "how": "computed"}
                else:
                    row["resident"][str(n)] = {"bytes": base + (n - 1) * state, "how": "computed"}
                # the board must also survive the load (sessions pre-packing one graph while its pages are mapped)
                row["resident"][str(n)]["fits"] = jetson_fit(max(row["resident"][str(n)]["bytes"], peak or 0), reserve)
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    def gib(b):
        return "-" if b is None else f"{b / GiB:.2f} GiB" if b >= GiB else f"{b / MiB:.0f} MiB"

    lines = ["| model | precision | weights held | state / stream | load peak | resident, 1 stream | 4 streams | "
             "16 streams | artifact | smallest Jetson, 1 / 16 streams |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        res = r["resident"]

        def cell(n):
            if str(n) not in res:
                return "-"
            return gib(res[str(n)]["bytes"]) + ("" if res[str(n)]["how"] == "measured" else " (c)")

        fits = " / ".join((res[k]["fits"] or "none") if k in res else "-" for k in ("1", "16"))
        lines.append(f"| {r['model']} | {r['precision']} | {gib(r['weights'])}{' (c)' if r['weights_computed'] else ''}"
                     f" | {r['state_per_stream'] / MiB:.2f} MiB | {gib(r.get('rss_load_peak'))} | {cell(1)} | {cell(4)} | {cell(16)} | "
                     f"{gib(r['artifact_bytes']) if r['artifact_bytes'] else '-'} | {fits} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.budget", description=__doc__.split("\n\n")[0])
    p.add_argument("artifacts", nargs="+")
    p.add_argument("--measured", nargs="*", default=[], help="bench.memory / bench.flagship JSON files (globs)")
    p.add_argument("--reserve-gib", type=float, default=RESERVE / GiB,
                   help="memory the board needs besides cobra-edge (default: %(default)s)")
    p.add_argument("--out", default=None, help="write budget-<time>.json and .md here")
    a = p.parse_args(argv)
    paths = [f for g in a.measured for f in sorted(glob.glob(g))]
    rows = budget(a.artifacts, paths, int(a.reserve_gib * GiB))
    table = markdown(rows)
    print(table)
    if a.out:
        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        stem = out / f"budget-{time.strftime('%Y%m%d-%H%M%S')}"
        doc = {"schema": SCHEMA, "when": time.strftime("%Y-%m-%d %H:%M:%S"), "reserve_bytes": int(a.reserve_gib * GiB),
               "jetsons": JETSONS, "measured_from": paths, "rows": rows}
        stem.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
        stem.with_suffix(".md").write_text(table + "\n")
        print(f"wrote {stem}.json and .md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
