"""How much memory an export needs, measured before anything large is allocated, and progress a log can show.

Exporting keeps the model's weights in memory about once (export/weight_store.py binds them to the artifact's
weights file, which PyTorch and ONNX Runtime then share) plus the working memory of one graph at a time:
measured peaks are 1.1x-1.3x the model's float32 weight bytes (README, "Memory"). ``check_memory`` refuses an export
whose estimate (1.5x) exceeds what the machine has available, with both numbers, instead of letting the kernel
kill it half way.
"""

from __future__ import annotations

import os
import sys
import time

EXPORT_FACTOR = 1.5  # peak resident memory of an export / the model's float32 weight bytes (a bound, see above)
GiB = 1 << 30


class ExportMemoryError(MemoryError):
    """The export would not fit this machine's available memory (names the estimate and what is available)."""


def weight_bytes(cfg) -> int:
    """Float32 bytes of a model config's weights, counted on PyTorch's meta device (nothing allocated)."""
    import torch

    from .model import CobraModel

    with torch.device("meta"):
        model = CobraModel(cfg)
    seen, total = set(), 0
    for t in [*model.parameters(), *model.buffers()]:
        if id(t) not in seen and t.is_floating_point():
            seen.add(id(t))
            total += t.numel() * 4
    return total


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


def check_memory(cfg, what: str) -> int:
    """Refuse early when ``EXPORT_FACTOR`` x the weights exceed the available memory; -> the estimate in bytes.
    COBRA_EDGE_SKIP_MEMORY_CHECK=1 skips the refusal (a machine whose swap or other tenants you know)."""
    need = int(weight_bytes(cfg) * EXPORT_FACTOR)
    have = available_bytes()
    if have is not None and need > have and os.environ.get("COBRA_EDGE_SKIP_MEMORY_CHECK") != "1":
        raise ExportMemoryError(
            f"exporting {what} needs about {need / GiB:.1f} GiB of memory ({EXPORT_FACTOR}x its "
            f"{need / EXPORT_FACTOR / GiB:.1f} GiB of float32 weights); this machine has {have / GiB:.1f} GiB available. "
            "Free memory or export on a larger machine (COBRA_EDGE_SKIP_MEMORY_CHECK=1 tries anyway)")
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
