"""Which selective-scan form the prefill graph uses, by measurement: export the prefill graph of one preset with
each form, check it against the PyTorch reference, and time them in ONNX Runtime side by side (contenders in
turns, same random weights and inputs; medians; ratios to the first form).

Forms (export/graphs.py, prefill_scan):
    fused            one cobra_edge.SelectiveScan node per layer, run by engines/kernels' fused CPU kernel
    fused:portable   the same graph file run without the kernel library: the node's portable function body
    chunked[:N]      the recurrence written out as one ONNX Scan over N-token chunks (the portable body's form)
    hop              one ONNX Scan over tokens

    python -m bench.scan_forms --preset mamba-130m --length 761 --forms fused fused:portable chunked:16
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from .timing import RESULTS_DIR, machine_info, side_by_side


def run(preset: str, length: int, forms: list[str], threads: int = 2, repeats: int = 3, say=print) -> dict:
    import torch

    from engines import load_engine
    from engines.kernels import status as kernel_status
    from export import graphs
    from export.config import preset as get_preset
    from export.model import build_random
    from export.onnx_export import _export_graph

    model = build_random(get_preset(preset))
    gdef = next(g for g in graphs.graph_defs(model) if g.name == "prefill")
    emb, conv, ssm = graphs.example_inputs(gdef, 1, length)
    feed = {"inputs_embeds": emb.numpy(), "conv_state": conv.numpy(), "ssm_state": ssm.numpy()}
    torch.set_num_threads(threads)
    with torch.no_grad():
        ref = model.llm.forward_embeds(emb, conv, ssm, last_only=True)
    rows, engines = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        files: dict[str, Path] = {}
        for form in forms:
            graph_form, _, how = form.partition(":") if form.startswith("fused") else (form, "", "")
            path = files.get(graph_form)
            export_s = 0.0
            if path is None:
                g = dataclasses.replace(gdef, module=functools.partial(graphs.PrefillGraph, scan=graph_form))
                path = files[graph_form] = Path(tmp) / f"prefill_{graph_form.replace(':', '_')}.onnx"
                t0 = time.perf_counter()
                _export_graph(model, g, path)
                export_s = time.perf_counter() - t0
            engine = engines[form] = load_engine("onnxruntime", path, name=form, threads=threads,
                                                 kernels=how != "portable")
            out = engine.run(feed)
            err = max(float(np.abs(out["logits"] - ref[0][:, -1].numpy()).max()),
                      float(np.abs(out["ssm_state_out"] - ref[2].numpy()).max()))
            rows[form] = {"export_s": round(export_s, 1), "max_abs_err": err,
                          "kernels": engine.kernels.describe() if engine.kernels else None}
            say(f"{preset} L={length} {form:<16} err {err:.1e}  (export {export_s:.0f} s)")
        timings = side_by_side({k: (lambda e=e: e.run(feed)) for k, e in engines.items()}, repeats, 1)
    first = next(iter(timings.values()))["median_ms"]
    for form, t in timings.items():
        rows[form].update(t, speedup_vs_first=round(first / t["median_ms"], 3))
        say(f"  {form:<16} prefill {t['median_ms']:.0f} ms ({first / t['median_ms']:.2f}x the first)")
    return {"schema": "cobra-edge-bench-scan-forms/2", "preset": preset, "length": length, "threads": threads,
            "machine": machine_info(threads), "kernels": kernel_status(), "forms": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="mamba-130m")
    p.add_argument("--length", type=int, default=761)
    p.add_argument("--forms", nargs="+", default=["fused", "fused:portable", "chunked:16", "chunked:32"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=str(RESULTS_DIR))
    a = p.parse_args(argv)
    doc = run(a.preset, a.length, a.forms, a.threads, a.repeats)
    out = Path(a.out) / f"scan-forms-{a.preset}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
