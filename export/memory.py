"""How much memory an export needs, measured before anything large is allocated, and progress a log can show.

Exporting keeps the model's weights in memory about once (export/weight_store.py binds them to the artifact's
weights file, which PyTorch and ONNX Runtime then share) plus the working memory of one graph at a time (the
exporter, the parity check's activations: about 1 GiB): ``estimate`` is 1.15x the float32 weights + 1 GiB, and a
float16 variant adds the language model's float32 bytes once more (ONNX Runtime's CPU provider, checking it, casts
its weights back to float32). ``check_memory`` refuses an export whose estimate exceeds what the machine has
available, with both numbers, instead of letting the kernel kill it half way.
"""

from __future__ import annotations

import os
import sys
import time

EXPORT_FACTOR = 1.15  # peak resident memory of an export / the model's float32 weight bytes, past the fixed part
EXPORT_FIXED = 1 << 30  # PyTorch, the exporter and one graph's parity check
GiB = 1 << 30


class ExportMemoryError(MemoryError):
    """The export would not fit this machine's available memory (names the estimate and what is available)."""


def weight_bytes(cfg, part: str = "all") -> int:
    """Float32 bytes of a model config's weights (``part`` "all" or "lm"), counted on PyTorch's meta device."""
    import torch

    from .model import CobraModel

    with torch.device("meta"):
        model = CobraModel(cfg)
    module = model if part == "all" else model.llm
    seen, total = set(), 0
    for t in [*module.parameters(), *module.buffers()]:
        if id(t) not in seen and t.is_floating_point():
            seen.add(id(t))
            total += t.numel() * 4
    return total


def estimate(cfg, precisions=("fp32",)) -> int:
    """Bytes of resident memory an export of ``cfg`` with these variants needs at its peak (see the module doc)."""
    need = int(weight_bytes(cfg) * EXPORT_FACTOR) + EXPORT_FIXED
    if "fp16" in precisions:
        need += weight_bytes(cfg, "lm")
    return need


def available_bytes() -> int | None:
    """MemAvailable from /proc/meminfo (what can be allocated without swapping); None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_memory(cfg, what: str, precisions=("fp32",)) -> int:
    """Refuse early when the estimate exceeds the available memory; -> the estimate in bytes.
    COBRA_EDGE_SKIP_MEMORY_CHECK=1 skips the refusal (a machine whose swap or other tenants you know)."""
    need, weights = estimate(cfg, precisions), weight_bytes(cfg)
    have = available_bytes()
    if have is not None and need > have and os.environ.get("COBRA_EDGE_SKIP_MEMORY_CHECK") != "1":
        fp16 = " and a float16 variant's check" if "fp16" in precisions else ""
        raise ExportMemoryError(
            f"exporting {what} needs about {need / GiB:.1f} GiB of memory (its {weights / GiB:.1f} GiB of float32 "
            f"weights, the exporter{fp16}); this machine has {have / GiB:.1f} GiB available. Free memory, leave out "
            "variants, or export on a larger machine (COBRA_EDGE_SKIP_MEMORY_CHECK=1 tries anyway)")
    return need


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def peak_rss_bytes() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class ProgressLines:
    """Plain progress lines with elapsed time and resident memory: readable on a terminal and in a log file.

        [   12.3 s | RSS  1.21 GiB | peak  1.40 GiB] export prefill
    """

    def __init__(self, label: str, stream=None, enabled: bool = True):
        self.label, self.stream, self.enabled = label, stream or sys.stderr, enabled
        self.t0 = time.perf_counter()

    def __call__(self, msg: str) -> None:
        if self.enabled:
            print(f"[{time.perf_counter() - self.t0:8.1f} s | RSS {rss_bytes() / GiB:5.2f} GiB | peak "
                  f"{peak_rss_bytes() / GiB:5.2f} GiB] {self.label}: {msg}", file=self.stream, flush=True)
