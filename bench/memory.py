"""Memory of an artifact, measured in fresh processes: resident memory after ``Runtime.load`` and after a prefill,
against the bytes of the weights the runtime runs; the artifact's size against its unique weight bytes.

    python -m bench.memory artifacts/m130 [more artifacts ...] --precisions fp32 int8 --out bench/results

Each (artifact, precision) is measured in its own process (``python -m bench.memory --child``), so nothing one
measurement allocated is counted by the next. Per measurement:
- ``rss_base``: after importing the runtime (Python, numpy, ONNX Runtime, OpenCV, tokenizers), before loading;
- ``rss_load``: after ``Runtime.load(dir, precision, threads)``; ``rss_load_peak``: the process's peak until then;
- ``rss_prefill``: after one prefill of ``tokens`` tokens at B = 1 (and a decode step), the ORT arena grown;
- ``streams``: with ``--streams 4 16``, after n streams' states and one prefill of n x ``tokens`` at once;
- ``weights_run``: bytes of the distinct weights the loaded graphs read (a tensor shared by graphs counts once;
  shared-file artifacts: regions of weights.bin; older artifacts: the model's parameters at that precision);
- the floors of the issue "Cobra-3B fits": rss_load <= 1.15 x weights_run + 64 MiB, rss_prefill <= 1.25 x + 64 MiB,
  checked on the absolute resident memory (the imports included) and reported with the import baseline apart.
The artifact's size is every file's bytes; ``unique_weight_bytes`` sums each distinct weight region once.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

MiB = 1 << 20
SCHEMA = "cobra-edge-bench-memory/1"


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def weights_run(runtime) -> tuple[int, str]:
    """Bytes of distinct weights the runtime's graphs read, and how they were counted."""
    regions = {}
    for engine in runtime.engines.values():
        for array, _ in getattr(engine, "_initializers", []):
            regions[(array.__array_interface__["data"][0], array.nbytes)] = array.nbytes
    if regions:
        return sum(regions.values()), "distinct regions of the shared weights file"
    import onnx  # an artifact whose graphs hold their own weights: count each distinct tensor once

    import hashlib

    seen = {}
    for entry in runtime.manifest.graphs_for(runtime.precision).values():
        model = onnx.load(str(entry.path))
        for t in model.graph.initializer:
            data = onnx.numpy_helper.to_array(t).tobytes()
            seen[hashlib.sha1(data).digest()] = len(data)
    return sum(seen.values()), "distinct initializers of the graph files"


def child(directory: str, precision: str, tokens: int, threads: int, streams: tuple[int, ...] = ()) -> dict:
    import numpy as np

    from edge.runtime import Runtime

    out = {"rss_base": _rss()}
    t0 = time.perf_counter()
    rt = Runtime.load(directory, precision=precision, threads=threads, max_streams=max((1, *streams)))
    out["load_s"] = time.perf_counter() - t0
    out["rss_load"] = _rss()
    out["rss_load_peak"] = _peak_rss()  # the process's high-water mark so far: the load's peak
    out["weights_run"], out["weights_counted_as"] = weights_run(rt)
    d_model = rt.manifest.model["lm"]["d_model"]
    conv, ssm = rt.manifest.state.zeros(1)
    x = (np.random.default_rng(0).standard_normal((1, tokens, d_model)) * 0.5).astype(np.float32)
    t0 = time.perf_counter()
    res = rt.engines["prefill"].run({"inputs_embeds": x, "conv_state": conv, "ssm_state": ssm})
    out["prefill_s"] = time.perf_counter() - t0
    rt.stepper.run(res["next_token"], res["conv_state_out"], res["ssm_state_out"])
    out["rss_prefill"] = _rss()
    for n in streams:  # n streams' states in the pool and a prefill of n x tokens at once: the largest batch
        slots = [rt.pool.allocate() for _ in range(n)]
        conv, ssm = rt.manifest.state.zeros(n)
        x = (np.random.default_rng(n).standard_normal((n, tokens, d_model)) * 0.5).astype(np.float32)
        t0 = time.perf_counter()
        res = rt.engines["prefill"].run({"inputs_embeds": x, "conv_state": conv, "ssm_state": ssm})
        for j, slot in enumerate(slots):
            rt.pool.write(slot, res["conv_state_out"][j], res["ssm_state_out"][j])
        rt.stepper.run(res["next_token"], res["conv_state_out"], res["ssm_state_out"])
        out.setdefault("streams", {})[str(n)] = {"rss": _rss(), "prefill_s": time.perf_counter() - t0}
        for slot in slots:
            rt.pool.release(slot)
        del x, res, conv, ssm
    return out


def weight_regions(entries, loaded_only: bool = True) -> dict:
    """(file, offset) -> (bytes, dtype, tensor name) of the distinct external weights of these graphs (name ->
    GraphEntry), read from the graph files' references; ``loaded_only``: without the step graph, which the runtime
    does not load (decoding runs through the prefill graph)."""
    from engines.onnxfile import external_refs

    out = {}
    for graph, entry in entries.items():
        if graph != "step" or not loaded_only:
            for tensor, r in external_refs(entry.path).items():
                out[(r.location, r.offset)] = (r.length, r.dtype, tensor)
    return out


def artifact_sizes(directory: Path) -> dict:
    from edge.manifest import Manifest

    m = Manifest.load(directory, verify_hashes=False)
    total = sum(p.stat().st_size for p in directory.iterdir() if p.is_file())
    out = {"artifact_bytes": total, "weights_file": m.weights_file}
    if m.weights_file:
        regions = {}
        for precision in m.precisions:
            regions.update(weight_regions(m.graphs_for(precision), loaded_only=False))
        out["unique_weight_bytes"] = sum(n for n, *_ in regions.values())
        out["weights_file_bytes"] = m.weights_path.stat().st_size
    return out


def run(artifacts: list[str], precisions: list[str], tokens: int, threads: int, out_dir: Path,
        streams: tuple[int, ...] = ()) -> tuple[dict, Path]:
    rows = []
    for directory in artifacts:
        sizes = artifact_sizes(Path(directory))
        for precision in precisions:
            r = subprocess.run([sys.executable, "-m", "bench.memory", "--child", directory, precision, str(tokens),
                                str(threads), ",".join(map(str, streams))], capture_output=True, text=True,
                               timeout=6 * 3600,
                               cwd=Path(__file__).resolve().parents[1])
            if r.returncode != 0:
                rows.append({"artifact": directory, "precision": precision, "error": r.stderr[-2000:]})
                continue
            m = json.loads(r.stdout.strip().splitlines()[-1])
            w = m["weights_run"]
            m.update(artifact=directory, precision=precision, **sizes,
                     load_ratio=(m["rss_load"] - 64 * MiB) / w, prefill_ratio=(m["rss_prefill"] - 64 * MiB) / w,
                     floor_load=m["rss_load"] <= 1.15 * w + 64 * MiB,
                     floor_prefill=m["rss_prefill"] <= 1.25 * w + 64 * MiB)
            rows.append(m)
            print(f"{directory} {precision}: weights {w / MiB:.0f} MiB, RSS import {m['rss_base'] / MiB:.0f}, "
                  f"after load {m['rss_load'] / MiB:.0f} ({m['load_ratio']:.2f}x + 64 MiB), after a {tokens}-token "
                  f"prefill {m['rss_prefill'] / MiB:.0f} MiB ({m['prefill_ratio']:.2f}x + 64 MiB)", flush=True)
    doc = {"schema": SCHEMA, "when": time.strftime("%Y-%m-%d %H:%M:%S"), "tokens": tokens, "threads": threads,
           "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                       "load_avg": os.getloadavg()}, "rows": rows}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"memory-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return doc, path


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--child"]:
        directory, precision, tokens, threads, streams = argv[1:6]
        print(json.dumps(child(directory, precision, int(tokens), int(threads),
                               tuple(int(n) for n in streams.split(",") if n))))
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__.split("\n\n")[0])
    p.add_argument("artifacts", nargs="+")
    p.add_argument("--precisions", nargs="+", default=["fp32"])
    p.add_argument("--tokens", type=int, default=761)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--streams", nargs="*", type=int, default=[],
                   help="also measure these numbers of streams: their states and a prefill of all of them at once")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    a = p.parse_args(argv)
    _, path = run(a.artifacts, a.precisions, a.tokens, a.threads, Path(a.out), tuple(a.streams))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
