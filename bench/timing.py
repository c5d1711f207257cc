"""What every benchmark here shares: timing contenders in turns, the machine's memory read bandwidth, and what the
machine is (written into each JSON beside the figures), and where results go.

    times = side_by_side({"a": fa, "b": fb}, repeats=10, warmup=1)     # {name: {median_ms, min_ms, runs_ms}}
    doc["machine"] = machine_info(threads=2)
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def side_by_side(fns: dict[str, Callable[[], object]], repeats: int, warmup: int,
                 slow: tuple[str, ...] = (), slow_repeats: int = 1) -> dict:
    """Time contenders in turns: every round calls each once (``slow`` ones only in the first ``slow_repeats``
    rounds, after no warm-up). -> {name: {median_ms, min_ms, runs_ms}}."""
    runs: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(warmup):
        for k, fn in fns.items():
            if k not in slow:
                fn()
    for i in range(repeats):
        for k, fn in fns.items():
            if k in slow and i >= slow_repeats:
                continue
            t = time.perf_counter()
            fn()
            runs[k].append((time.perf_counter() - t) * 1e3)
    return {k: {"median_ms": float(np.median(r)), "min_ms": float(np.min(r)), "runs_ms": [round(x, 3) for x in r]}
            for k, r in runs.items()}


def timed(fn: Callable[[], object], repeats: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) * 1e3)
    return {"median_ms": float(np.median(runs)), "min_ms": float(np.min(runs)), "runs_ms": [round(r, 3) for r in runs]}


def read_probe(threads: int, mbytes: int = 1024) -> tuple[Callable[[], object], int]:
    """A call that reads a buffer larger than any cache once (a sum over float32, torch with ``threads``
    threads), and the bytes it reads: bandwidth = bytes / its time."""
    import torch

    torch.set_num_threads(threads)
    a = torch.ones(mbytes * (1 << 20) // 4, dtype=torch.float32)
    return (lambda: a.sum()), a.numel() * 4


def measure_read_bandwidth(threads: int, mbytes: int = 1024, repeats: int = 10) -> dict:
    """GB/s of reading a buffer larger than any cache: median and best of ``repeats`` (the shared machine's
    bandwidth varies from one moment to the next: the step rows also measure it in their own rounds)."""
    read, nbytes = read_probe(threads, mbytes)
    runs = timed(read, repeats=repeats, warmup=1)
    return {"median": nbytes / (runs["median_ms"] / 1e3) / 1e9, "best": nbytes / (runs["min_ms"] / 1e3) / 1e9}


def write_result(out_dir: str | Path, name: str, doc: dict) -> Path:
    """``doc`` as ``out_dir/name-<date>-<time>.json`` (the folder made if missing); -> its path, printed."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {path}")
    return path


def machine_info(threads: int) -> dict:
    import onnxruntime
    import torch

    fields: dict[str, str] = {}  # the first CPU's "model name", "flags", ...
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    cpu = fields.get("model name", platform.processor())
    flags = set(fields.get("flags", "").split())
    from engines.kernels import status as kernel_status

    info = {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "torch": torch.__version__, "kernels": kernel_status(),
            "cpu_flags": sorted(flags & {"avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8"})}
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info
