"""Per-frame timings and their aggregation (percentiles per stage)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np

STAGES = ("preprocess", "vision", "projector", "prefill", "heads", "decode", "total")


@dataclass
class FrameProfile:
    """Wall times of one frame in milliseconds, per stage, and the frame's age when work on it began."""

    stream: str = ""
    frame_index: int = -1
    preprocess: float = 0.0
    vision: float = 0.0
    projector: float = 0.0
    prefill: float = 0.0
    decode: float = 0.0
    heads: float = 0.0  # action heads (artifacts with heads)
    total: float = 0.0
    age_ms: float | None = None  # now - capture timestamp at start, when the frame had one
    capture_ts: float | None = None  # the frame's capture timestamp (time.time() seconds), when it had one
    prefill_tokens: int = 0
    new_tokens: int = 0
    batch_size: int = 1  # frames answered together with this one (itself included)
    dropped: int = 0  # frames of this stream dropped since its previous answer (superseded or too old)

    def to_dict(self) -> dict:
        return asdict(self)


class StageTimer:
    """``with timer.stage("vision"): ...`` adds the block's wall time (ms) to that field of the profile."""

    def __init__(self, profile: FrameProfile):
        self.profile = profile
        self._t0 = time.perf_counter()

    @contextmanager
    def stage(self, name: str):
        t = time.perf_counter()
        try:
            yield
        finally:
            setattr(self.profile, name, getattr(self.profile, name) + (time.perf_counter() - t) * 1e3)

    def finish(self) -> FrameProfile:
        self.profile.total = (time.perf_counter() - self._t0) * 1e3
        return self.profile


@dataclass
class Profiler:
    """Collects FrameProfiles; ``summary()`` gives p50/p90/p99/max per stage."""

    frames: list[FrameProfile] = field(default_factory=list)

    def add(self, profile: FrameProfile) -> None:
        self.frames.append(profile)

    def summary(self) -> dict[str, dict[str, float]]:
        out = {}
        for stage in STAGES:
            values = np.array([getattr(f, stage) for f in self.frames], dtype=np.float64)
            if values.size == 0 or (stage == "heads" and not values.any()):  # no action heads: no row
                continue
            out[stage] = {
                "p50": float(np.percentile(values, 50)),
                "p90": float(np.percentile(values, 90)),
                "p99": float(np.percentile(values, 99)),
                "max": float(values.max()),
                "mean": float(values.mean()),
            }
        return out

    def format_summary(self) -> str:
        return format_stages(self.summary())


def format_stages(summary: dict[str, dict[str, float]]) -> str:
    """The table of ``Profiler.summary()``: one row per stage, p50/p90/p99/max in ms."""
    lines = [f"{'stage':<11}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'max ms':>10}"]
    for stage, q in summary.items():
        lines.append(f"{stage:<11}{q['p50']:>10.2f}{q['p90']:>10.2f}{q['p99']:>10.2f}{q['max']:>10.2f}")
    return "\n".join(lines)
