"""``cobra-edge profile``: run streams through the scheduler and record every frame's latency.

Each round reads one frame per live stream, submits it, and answers the batch of newest frames. Outputs:
``PATH.csv`` and ``PATH.json`` (one record per answered frame: stream, frame index, capture timestamp, age at
start, each stage in ms, batch size, dropped count, tokens, when it was answered, its age at the answer, the answer;
the JSON adds errors and the summary: edge.profile_summary), a terminal summary (what ran on what, the sources and
whether a video was read faster than real time, p50/p90/p99/max per stage, per stream fps, jitter, p50/p99 of total
latency and of frame age, state bytes per stream, process RSS at start and end) and ``PATH.png`` (edge.profile_plot:
a title block, one lane per stream, stacked stage medians, frame age and drops over time; needs matplotlib, the
``plot`` extra). A source that fails or ends is recorded as an error of its stream; the others go on.

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

from .profile import STAGES, Profiler
from .profile_summary import ReadClock, format_summary, host_facts, load_average, source_facts, summarize
from .progress import Progress
from .records import RecordFiles
from .runtime import Runtime
from .scheduler import FrameScheduler

__all__ = ["RECORD_FIELDS", "ProfileRun", "format_summary", "rss_bytes", "run_profile", "summarize", "write_outputs"]

RECORD_FIELDS = ("stream", "frame_index", "capture_ts", "age_ms", *STAGES, "batch_size", "dropped",
                 "prefill_tokens", "new_tokens", "done_s", "age_at_answer_ms", "answer")


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
                files: RecordFiles | None = None, stop: threading.Event | None = None,
                threads: int | None = None) -> ProfileRun:
    """Up to ``frames`` rounds over ``sources`` (stream name -> object with ``read()``); each record also goes to
    ``files`` as it is made; ``stop`` ends the run after the current round. ``threads``: the intra-op threads the
    runtime was loaded with, for the title block (None: ONNX Runtime's default)."""
    run = ProfileRun()
    rss_start = rss_bytes()
    title = {"model": runtime.manifest.model.get("name"), "precision": runtime.precision, "backend": runtime.backend,
             "device": runtime.device, "threads": threads, "streams": len(sources), "mode": mode,
             "max_new_tokens": max_new_tokens, "max_age_ms": max_age_ms, **host_facts()}
    sched = FrameScheduler(runtime, prompt, max_new_tokens=max_new_tokens, max_age_ms=max_age_ms,
                           max_batch=max(len(sources), 1))
    for name in sources:
        sched.add_stream(name, mode)
    live = dict(sources)
    profiler = Profiler()
    seen_errors = {n: 0 for n in sources}
    clocks = {n: ReadClock() for n in sources}
    timeline: list[tuple[float, dict[str, int]]] = []  # (t_s, cumulative drops per stream) after each round
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
            clocks[name].tick(time.perf_counter() - t0)
            frame, ts = item
            sched.submit(name, frame, ts, boxes=getattr(live[name], "boxes", None) if runtime.takes_boxes else None)
        for answer in sched.run_once():
            profiler.add(answer.profile)
            p = answer.profile
            rec = {**p.to_dict(), "done_s": time.perf_counter() - t0, "answer": answer.text,
                   "age_at_answer_ms": None if p.age_ms is None else p.age_ms + p.total}  # capture -> answer
            run.records.append({k: rec.get(k) for k in RECORD_FIELDS})
            if files is not None:
                files.add(run.records[-1])
        for name in sources:  # errors of this round, per stream
            new = sched.stats[name].errors - seen_errors[name]
            for msg in list(sched.errors[name])[-new:] if new else []:
                run.errors.append({"stream": name, "error": msg, "at_s": time.perf_counter() - t0})
            seen_errors[name] = sched.stats[name].errors
        timeline.append((time.perf_counter() - t0, {n: c.dropped for n, c in sched.stats.items()}))
        bar.update(1, f"{len(run.records)} answered")
    bar.close()
    wall = time.perf_counter() - t0
    title["load_avg_end"] = load_average()
    run.summary = summarize(run.records, profiler, sched.stats, wall, runtime.bytes_per_stream, rss_start,
                            rss_bytes(), timeline, {n: source_facts(s, clocks[n]) for n, s in sources.items()}, title)
    run.summary["interrupted"] = bool(stop is not None and stop.is_set())
    skipped = {n: src.skips for n, src in sources.items() if getattr(src, "skips", 0)}
    if skipped:  # image folders: files that could not be decoded, passed over
        run.summary["skipped_images"] = skipped
    return run


def write_outputs(run: ProfileRun, out: str | os.PathLike, files: RecordFiles | None = None) -> dict[str, Path]:
    """PATH.csv, PATH.json and (with matplotlib) PATH.png; PATH's own suffix, if any, is replaced. With ``files``
    (records already streamed there) only the JSON and the PNG remain to write; all of it atomically."""
    from .profile_plot import plot_png

    if files is None:
        files = RecordFiles(out, RECORD_FIELDS)
        for rec in run.records:
            files.add(rec)
    doc = {"records": run.records, "errors": run.errors, "summary": run.summary}
    return files.finish(doc, lambda path: plot_png(run, path))
