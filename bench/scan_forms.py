"""Which selective-scan form the prefill graph uses, by measurement: export the prefill graph of one preset with
each form of export/scan.py, check it against the PyTorch reference, and time it in ONNX Runtime on the same
random weights and inputs (medians; ratios to the per-token Scan).

    python -m bench.scan_forms --preset mamba-130m --length 761 --forms hop chunked:8 chunked:16 chunked:32
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

from .lm import RESULTS_DIR, machine_info, timed


def run(preset: str, length: int, forms: list[str], threads: int = 2, repeats: int = 3, say=print) -> dict:
    import onnxruntime as ort
    import torch

    from export import graphs
    from export.config import preset as get_preset
    from export.model import build_random
    from export.onnx_export import _export_graph
    from export.scan import SCANS

    model = build_random(get_preset(preset))
    gdef = next(g for g in graphs.graph_defs(model) if g.name == "prefill")
    emb, conv, ssm = graphs.example_inputs(gdef, 1, length)
    feed = {"inputs_embeds": emb.numpy(), "conv_state": conv.numpy(), "ssm_state": ssm.numpy()}
    torch.set_num_threads(threads)
    with torch.no_grad():
        ref = model.llm.forward_embeds(emb, conv, ssm, last_only=True)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for form in forms:
            base, _, chunk = form.partition(":")
            if chunk:
                SCANS[form] = functools.partial(SCANS[base], chunk=int(chunk))
            g = dataclasses.replace(gdef, module=functools.partial(graphs.PrefillGraph, scan=form))
            path = Path(tmp) / f"prefill_{form.replace(':', '_')}.onnx"
            t0 = time.perf_counter()
            _export_graph(model, g, path)
            export_s = time.perf_counter() - t0
            so = ort.SessionOptions()
            so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            out = sess.run(None, feed)
            err = max(float(np.abs(out[0] - ref[0][:, -1].numpy()).max()), float(np.abs(out[2] - ref[2].numpy()).max()))
            rows[form] = {"export_s": round(export_s, 1), "max_abs_err": err, **timed(lambda: sess.run(None, feed), repeats, 1)}
            say(f"{preset} L={length} {form:<12} prefill {rows[form]['median_ms']:.0f} ms  err {err:.1e}  "
                f"(export {export_s:.0f} s)")
    base_ms = rows.get("hop", next(iter(rows.values())))["median_ms"]
    for r in rows.values():
        r["speedup_vs_hop"] = round(base_ms / r["median_ms"], 3)
    return {"schema": "cobra-edge-bench-scan-forms/1", "preset": preset, "length": length, "threads": threads,
            "machine": machine_info(threads), "forms": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="mamba-130m")
    p.add_argument("--length", type=int, default=761)
    p.add_argument("--forms", nargs="+", default=["hop", "chunked:8", "chunked:16", "chunked:32"])
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
