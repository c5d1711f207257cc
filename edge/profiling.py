"""``cobra-edge profile``: run streams through the scheduler and record every frame's latency.

Each round reads one frame per live stream, submits it, and answers the batch of newest frames. Outputs:
``PATH.csv`` and ``PATH.json`` (one record per answered frame: stream, frame index, capture timestamp, age at
start, each stage in ms, batch size, dropped count, tokens, answer; the JSON adds errors and the summary),
a terminal summary (p50/p90/p99/max per stage, frames per second per stream, jitter, state bytes per stream,
process RSS at start and end) and ``PATH.png`` (latency over time per stage and a histogram; needs matplotlib,
the ``plot`` extra). A source that fails or ends is recorded as an error of its stream; the others go on.

Results survive the run (edge.records): with ``files`` given, each record is a CSV row on disk as soon as its frame
is answered, and the JSON and PNG are written atomically at the end; ``stop`` (set by SIGINT / SIGTERM) ends the
run after the current round, and what was answered so far is summarised and written (``summary.interrupted``).
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .profile import STAGES, Profiler, format_stages
from .progress import Progress
from .records import RecordFiles
from .runtime import Runtime
from .scheduler import FrameScheduler

RECORD_FIELDS = ("stream", "frame_index", "capture_ts", "age_ms", *STAGES, "batch_size", "dropped",
                 "prefill_tokens", "new_tokens", "done_s", "answer")


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; ru_maxrss elsewhere)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@dataclass
class ProfileRun:
    records: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)
    summary: dict = field(default_factory=dict)


def run_profile(runtime: Runtime, sources: dict, prompt: str, frames: int, max_new_tokens: int = 8,
                max_age_ms: float | None = None, mode: str = "reset", progress: bool = True,
                files: RecordFiles | None = None, stop: threading.Event | None = None) -> ProfileRun:
    """Up to ``frames`` rounds over ``sources`` (stream name -> object with ``read()``); each record also goes to
    ``files`` as it is made; ``stop`` ends the run after the current round."""
    run = ProfileRun()
    rss_start = rss_bytes()
    sched = FrameScheduler(runtime, prompt, max_new_tokens=max_new_tokens, max_age_ms=max_age_ms,
                           max_batch=max(len(sources), 1))
    for name in sources:
        sched.add_stream(name, mode)
    live = dict(sources)
    profiler = Profiler()
    seen_errors = {n: 0 for n in sources}
    bar = Progress(frames, "profile", force=progress and os.isatty(2))
    t0 = time.perf_counter()
    for _ in range(frames):
        if not live or (stop is not None and stop.is_set()):
            break
        for name in list(live):
            try:
                item = live[name].read()
            except Exception as e:  # the source is broken (a folder with no readable image, a device gone)
                run.errors.append({"stream": name, "error": f"source: {type(e).__name__}: {e}",
                                   "at_s": time.perf_counter() - t0})
                del live[name]
                continue
            if item is None:
                got = sched.stats[name].submitted
                run.errors.append({"stream": name, "error": f"source ended after {got} of {frames} frames",
                                   "at_s": time.perf_counter() - t0})
                del live[name]
                continue
            frame, ts = item
            sched.submit(name, frame, ts, boxes=getattr(live[name], "boxes", None) if runtime.takes_boxes else None)
        for answer in sched.run_once():
            profiler.add(answer.profile)
            rec = {**answer.profile.to_dict(), "done_s": time.perf_counter() - t0, "answer": answer.text}
            run.records.append({k: rec.get(k) for k in RECORD_FIELDS})
            if files is not None:
                files.add(run.records[-1])
        for name in sources:  # errors of this round, per stream
            new = sched.stats[name].errors - seen_errors[name]
            for msg in list(sched.errors[name])[-new:] if new else []:
                run.errors.append({"stream": name, "error": msg, "at_s": time.perf_counter() - t0})
            seen_errors[name] = sched.stats[name].errors
        bar.update(1, f"{len(run.records)} answered")
    bar.close()
    wall = time.perf_counter() - t0
    run.summary = summarize(run.records, profiler, sched, wall, runtime.bytes_per_stream, rss_start, rss_bytes())
    run.summary["interrupted"] = bool(stop is not None and stop.is_set())
    skipped = {n: src.skips for n, src in sources.items() if getattr(src, "skips", 0)}
    if skipped:  # image folders: files that could not be decoded, passed over
        run.summary["skipped_images"] = skipped
    return run


def summarize(records: list[dict], prof: Profiler, sched: FrameScheduler, wall_s: float, state_bytes: int,
              rss_start: int, rss_end: int) -> dict:
    streams = {}
    for name, c in sched.stats.items():
        done = np.array([r["done_s"] for r in records if r["stream"] == name])
        gaps = np.diff(done) * 1e3 if done.size > 1 else np.array([])
        streams[name] = {"answered": c.answered, "dropped": c.dropped, "errors": c.errors,
                         "fps": c.answered / wall_s if wall_s > 0 else 0.0,
                         "jitter_ms": float(gaps.std()) if gaps.size else 0.0,
                         "interval_p50_ms": float(np.median(gaps)) if gaps.size else 0.0}
    return {"stages_ms": prof.summary(), "streams": streams, "wall_s": wall_s, "frames_answered": len(records),
            "state_bytes_per_stream": state_bytes, "rss_start_bytes": rss_start, "rss_end_bytes": rss_end}


def format_summary(summary: dict) -> str:
    lines = [format_stages(summary["stages_ms"])]
    lines.append(f"{'stream':<11}{'answered':>10}{'dropped':>10}{'errors':>10}{'fps':>10}{'jitter ms':>11}")
    for name, s in summary["streams"].items():
        lines.append(f"{name:<11}{s['answered']:>10}{s['dropped']:>10}{s['errors']:>10}{s['fps']:>10.2f}"
                     f"{s['jitter_ms']:>11.2f}")
    lines.append(f"state bytes per stream {summary['state_bytes_per_stream']:,}; process RSS "
                 f"{summary['rss_start_bytes'] / 2**20:.1f} MiB at start, {summary['rss_end_bytes'] / 2**20:.1f} MiB at end")
    return "\n".join(lines)


def write_outputs(run: ProfileRun, out: str | os.PathLike, files: RecordFiles | None = None) -> dict[str, Path]:
    """PATH.csv, PATH.json and (with matplotlib) PATH.png; PATH's own suffix, if any, is replaced. With ``files``
    (records already streamed there) only the JSON and the PNG remain to write; all of it atomically."""
    if files is None:
        files = RecordFiles(out, RECORD_FIELDS)
        for rec in run.records:
            files.add(rec)
    doc = {"records": run.records, "errors": run.errors, "summary": run.summary}
    return files.finish(doc, lambda path: plot_png(run.records, path))


def plot_png(records: list[dict], path: Path) -> bool:
    """Latency over time per stage and a histogram of the total; False when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, (ax_t, ax_h) = plt.subplots(1, 2, figsize=(12, 4.5))
    t = [r["done_s"] for r in records]
    for stage in STAGES:
        ax_t.plot(t, [r[stage] for r in records], ".-" if len(t) < 60 else "-", label=stage, linewidth=1)
    ax_t.set_xlabel("time since start (s)")
    ax_t.set_ylabel("ms")
    ax_t.set_title("latency per stage")
    ax_t.legend(fontsize=8)
    ax_h.hist([r["total"] for r in records], bins=min(40, max(len(records), 1)))
    ax_h.set_xlabel("total ms per frame")
    ax_h.set_title(f"{len(records)} frames")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True
