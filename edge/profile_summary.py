"""The figures of a ``cobra-edge profile`` run, as its JSON summary holds them and its PNG and terminal show them.

``summary`` (PATH.json; times in ms, rates per second of wall time, ``t`` in seconds since the run started):

    stages_ms         all streams: p50 / p90 / p99 / max / mean per stage (edge.profile.Profiler)
    streams           per stream: answered, dropped, errors, fps, jitter_ms, interval_p50_ms, and what the PNG draws:
                      stages_ms {stage: {p50, p99}} (its lane's p50 / p99 lines, its bar of stage medians),
                      age_at_answer_ms {p50, p99} (capture -> answer), drops_per_s [frames dropped in second 0, 1, ...]
    age_at_answer_ms  all streams: {p50, p99} (the age panel's lines)
    lanes             the stream names, top lane first
    sources           per stream: kind, path, fps (the file's frame rate), paced, passed_over, frames_read, read_fps,
                      real_time_x (read_fps / fps), faster_than_real_time (None without a frame rate)
    title             model, precision, backend, device, threads, streams, mode, max_new_tokens, max_age_ms, date, cpu,
                      cpu_count, load_avg_start, load_avg_end (the 1-, 5- and 15-minute load averages)
    wall_s, frames_answered, state_bytes_per_stream, rss_start_bytes, rss_end_bytes, interrupted, [skipped_images]

A percentile pair is None where its stream has no value (no frame answered, or no capture timestamps).
"""

from __future__ import annotations

import datetime
import math
import os
import platform
from dataclasses import dataclass

import numpy as np

from .profile import STAGES, Profiler, format_stages

REAL_TIME_TOLERANCE = 0.05  # read_fps above fps x (1 + this) is "faster than real time" (clock and decode jitter)
DROP_BIN_S = 1.0  # drops_per_s: one count per second of the run


@dataclass
class ReadClock:
    """When one stream's source delivered its frames (``t`` in seconds on one monotonic clock): how fast it was
    read, first delivery to last."""

    count: int = 0
    first_s: float | None = None
    last_s: float | None = None

    def tick(self, t_s: float) -> None:
        self.count += 1
        self.first_s = t_s if self.first_s is None else self.first_s
        self.last_s = t_s

    @property
    def fps(self) -> float | None:
        """Frames delivered per second ((count - 1) intervals over the span); None under two frames."""
        if self.count < 2 or self.last_s <= self.first_s:
            return None
        return (self.count - 1) / (self.last_s - self.first_s)


def p50_p99(values) -> dict[str, float] | None:
    """{"p50", "p99"} of the values (numpy's linear percentiles, as Profiler's), None when there are none."""
    a = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if a.size == 0:
        return None
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99))}


def cpu_model() -> str:
    """The CPU's name from /proc/cpuinfo (x86 "model name"; ARM "Model" or "Hardware"), else the platform's."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
    except OSError:
        fields = {}
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    for key in ("model name", "Model", "Hardware", "cpu model"):
        if fields.get(key):
            return fields[key]
    return platform.processor() or platform.machine() or "unknown CPU"


def load_average() -> list[float] | None:
    """The 1-, 5- and 15-minute load averages (runnable processes), None where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def host_facts() -> dict:
    """The title block's facts about this machine, taken when the run starts."""
    return {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "cpu": cpu_model(),
            "cpu_count": os.cpu_count(), "load_avg_start": load_average()}


def source_facts(source, clock: ReadClock) -> dict:
    """Kind, path, frame rate and pacing (``source.describe()`` where it has one, else its ``kind``) and how fast the
    run read it; faster_than_real_time: read_fps above the file's fps (None for sources without a frame rate)."""
    facts = {"kind": getattr(source, "kind", type(source).__name__), "path": None, "fps": None, "paced": False,
             "passed_over": 0}
    if hasattr(source, "describe"):
        facts.update(source.describe())
    read_fps = clock.fps
    ratio = read_fps / facts["fps"] if read_fps is not None and facts["fps"] else None
    facts.update(frames_read=clock.count, read_fps=read_fps, real_time_x=ratio,
                 faster_than_real_time=None if ratio is None else bool(ratio > 1 + REAL_TIME_TOLERANCE))
    return facts


def drops_per_s(timeline: list[tuple[float, dict[str, int]]], name: str, wall_s: float) -> list[int]:
    """Frames of ``name`` dropped in each second of the run, from (t_s, cumulative drops per stream) after each round."""
    bins = [0] * max(1, math.ceil(wall_s / DROP_BIN_S))
    before = 0
    for t_s, dropped in timeline:
        bins[min(int(t_s / DROP_BIN_S), len(bins) - 1)] += dropped[name] - before
        before = dropped[name]
    return bins


def stream_figures(records: list[dict], name: str, counters, wall_s: float,
                   timeline: list[tuple[float, dict[str, int]]]) -> dict:
    """One stream's entry of ``summary["streams"]`` (see the module docstring)."""
    mine = [r for r in records if r["stream"] == name]
    done = np.array([r["done_s"] for r in mine])
    gaps = np.diff(done) * 1e3 if done.size > 1 else np.array([])
    return {"answered": counters.answered, "dropped": counters.dropped, "errors": counters.errors,
            "fps": counters.answered / wall_s if wall_s > 0 else 0.0,
            "jitter_ms": float(gaps.std()) if gaps.size else 0.0,
            "interval_p50_ms": float(np.median(gaps)) if gaps.size else 0.0,
            "stages_ms": {s: p50_p99(r[s] for r in mine) for s in STAGES},
            "age_at_answer_ms": p50_p99(r["age_at_answer_ms"] for r in mine),
            "drops_per_s": drops_per_s(timeline, name, wall_s)}


def summarize(records: list[dict], prof: Profiler, stats: dict, wall_s: float, state_bytes: int, rss_start: int,
              rss_end: int, timeline: list[tuple[float, dict[str, int]]] | None = None,
              sources: dict[str, dict] | None = None, title: dict | None = None) -> dict:
    """The run's summary: ``stats`` the scheduler's counters per stream, ``timeline`` (t_s, cumulative drops per
    stream) after each round, ``sources`` source_facts per stream, ``title`` the title block's facts."""
    timeline = timeline or []
    streams = {name: stream_figures(records, name, c, wall_s, timeline) for name, c in stats.items()}
    return {"stages_ms": prof.summary(), "streams": streams, "wall_s": wall_s, "frames_answered": len(records),
            "state_bytes_per_stream": state_bytes, "rss_start_bytes": rss_start, "rss_end_bytes": rss_end,
            "age_at_answer_ms": p50_p99(r["age_at_answer_ms"] for r in records), "lanes": list(stats),
            "sources": sources or {}, "title": title or {}}


def _times(ratio: float) -> str:
    return f"{ratio:.1f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def _ms(q: dict | None, key: str) -> str:
    return "-" if q is None else f"{q[key]:.1f}"


def title_lines(summary: dict) -> list[str]:
    """The title block: what ran, on what, when (empty facts are left out)."""
    t = summary.get("title", {})
    if not t:
        return []
    threads = t.get("threads") or f"ONNX Runtime's default ({t.get('cpu_count')} logical CPUs)"
    age = f", frames older than {t['max_age_ms']:g} ms dropped" if t.get("max_age_ms") else ""
    load = t.get("load_avg_start")
    lines = [f"{t.get('model')} · {t.get('precision')} · {t.get('backend')} on {t.get('device')} · "
             f"threads per graph: {threads} · streams: {t.get('streams')} ({t.get('mode')}){age}",
             f"{t.get('date')} · {t.get('cpu')} ({t.get('cpu_count')} logical CPUs) · load average "
             + (" / ".join(f"{x:g}" for x in load) + " (1 / 5 / 15 min) before the run" if load else "unknown"),
             f"{summary['frames_answered']} frames answered in {summary['wall_s']:.1f} s; up to "
             f"{t.get('max_new_tokens')} new tokens each" + ("; INTERRUPTED" if summary.get("interrupted") else "")]
    return lines


def source_lines(summary: dict) -> list[tuple[str, bool]]:
    """One line per group of streams with the same source: (text, faster_than_real_time of any of them)."""
    groups: dict[tuple, list[str]] = {}
    for name, f in summary.get("sources", {}).items():
        groups.setdefault((f["kind"], f["path"], f["fps"], f["paced"]), []).append(name)
    lines = []
    for (kind, path, fps, paced), names in groups.items():
        facts = [summary["sources"][n] for n in names]
        who = ", ".join(names) if len(names) <= 4 else f"{names[0]} .. {names[-1]} ({len(names)} streams)"
        what = f"{kind} {os.path.basename(path)}" if path else kind
        if fps is None:
            lines.append((f"{who}: {what} (no frame rate: each frame made when asked)", False))
            continue
        reads = [f["read_fps"] for f in facts if f["read_fps"] is not None]
        fast = any(f["faster_than_real_time"] for f in facts)
        pace = "paced at its frame rate" if paced else "not paced"
        if reads:
            lo, hi = min(reads), max(reads)
            one = hi <= lo * 1.02  # the same rate, give or take 2 %
            rate = f"{lo:.1f} fps" if one else f"{lo:.1f} to {hi:.1f} fps"
            speed = _times(lo / fps) if one else f"{_times(lo / fps)} to {_times(hi / fps)}"
            text = f"{who}: {what} at {fps:g} fps, read at {rate} ({speed} real time, {pace})"
        else:
            text = f"{who}: {what} at {fps:g} fps ({pace})"
        passed = sum(f["passed_over"] for f in facts)
        if passed:
            text += f"; {passed} frames passed over (the run was late for them)"
        if fast:
            text += ": READ FASTER THAN REAL TIME, ages and drops are not a camera's (--paced reads it as one)"
        lines.append((text, fast))
    return lines


def format_summary(summary: dict) -> str:
    """The terminal's summary: title, sources, the stage table, one row per stream, state and memory."""
    lines = title_lines(summary) + [text for text, _ in source_lines(summary)]
    lines.append(format_stages(summary["stages_ms"]))
    lines.append(f"{'stream':<11}{'answered':>10}{'dropped':>10}{'errors':>10}{'fps':>10}{'jitter ms':>11}"
                 f"{'p50 ms':>9}{'p99 ms':>9}{'age p50':>9}{'age p99':>9}")
    for name, s in summary["streams"].items():
        total, age = s.get("stages_ms", {}).get("total"), s.get("age_at_answer_ms")
        lines.append(f"{name:<11}{s['answered']:>10}{s['dropped']:>10}{s['errors']:>10}{s['fps']:>10.2f}"
                     f"{s['jitter_ms']:>11.2f}{_ms(total, 'p50'):>9}{_ms(total, 'p99'):>9}{_ms(age, 'p50'):>9}"
                     f"{_ms(age, 'p99'):>9}")
    lines.append(f"state bytes per stream {summary['state_bytes_per_stream']:,}; process RSS "
                 f"{summary['rss_start_bytes'] / 2**20:.1f} MiB at start, {summary['rss_end_bytes'] / 2**20:.1f} MiB at end")
    return "\n".join(lines)
