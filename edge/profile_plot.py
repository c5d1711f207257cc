"""``PATH.png`` of ``cobra-edge profile``: the run on one page, for the engineer who has to close a loop around it.

    title block        model, precision, backend, device, threads, streams, date, CPU, load average; each source,
                       its frame rate and how fast it was read (in red: a video read faster than real time)
    lanes              one per stream, time since the start (s) across: each answered frame at the time of its
                       answer, its stages stacked in colour (grey up to its total: the time between the stages),
                       its total latency (ms) as a dot; the stream's p50
                       (dashed) and p99 (dotted) total; a red line where the stream had an error
    stage medians      one stacked bar per stream of its per-stage p50s (ms), with its total p50 and p99 marked
    frame age          capture -> answer (ms) over time per stream, the p50 and p99 of all streams, max age if set
    drops              frames dropped (superseded or stale) per second, per stream
    latency histogram  total latency of all frames, stacked by stream, with the p50 and p99

Every figure drawn is in the JSON summary (edge.profile_summary). Needs matplotlib (the ``plot`` extra):
``plot_png`` returns False without it and the caller says so. Drawn on a ``matplotlib.figure.Figure`` (no pyplot:
no global state, no display backend).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

from .profile_summary import source_lines, title_lines

PARTS = ("preprocess", "vision", "projector", "prefill", "heads", "decode")  # the stages that add up to a frame's total
PART_COLOURS = {"preprocess": "#8172b3", "vision": "#4c72b0", "projector": "#55a868", "prefill": "#dd8452",
                "heads": "#937860", "decode": "#c44e52"}
OTHER_COLOUR = "#d9d9d9"  # total - the stages: batching, tokenizing, bookkeeping between the stages
TITLE_WIDTH_CHARS = 170  # title lines wrap here (15-inch figure, 9.5 pt text)
P50_STYLE = {"color": "black", "linestyle": "--", "linewidth": 1.0}
P99_STYLE = {"color": "#b00000", "linestyle": ":", "linewidth": 1.3}


def plot_png(run, path: Path) -> bool:
    """Draw ``run`` (a ProfileRun: records, errors, summary) to ``path``; False when matplotlib is missing."""
    try:
        fig = build_figure(run.records, run.errors, run.summary)
    except ImportError:
        return False
    fig.savefig(path, dpi=90, format="png")
    return True


def build_figure(records: list[dict], errors: list[dict], summary: dict):
    """The figure (matplotlib ``Figure``): title block, one lane per stream, stage medians, frame age, drops, and the
    latency histogram; len(fig.axes) == number of streams + 5 (4 without streams: no bar of medians). ImportError
    without matplotlib."""
    from matplotlib.figure import Figure

    lanes = summary.get("lanes") or list(summary["streams"])
    head = title_lines(summary)
    sources = source_lines(summary)
    wrapped = sum(len(textwrap.wrap(text, TITLE_WIDTH_CHARS)) for text in head + [t for t, _ in sources])
    n = max(len(lanes), 1)
    lane_h = 1.0 if n <= 6 else max(0.45, 6.0 / n)
    title_h = 0.45 + 0.2 * wrapped
    heights = [title_h, *[lane_h] * len(lanes), 1.9, 1.3]
    fig = Figure(figsize=(15, sum(heights) + 0.9), layout="constrained")
    grid = fig.add_gridspec(len(heights), 2, height_ratios=heights, width_ratios=[3.2, 1.25])
    _title(fig.add_subplot(grid[0, :]), summary, head, sources)
    t_end = max(summary.get("wall_s", 0.0), max((r["done_s"] for r in records), default=0.0), 1e-3)
    bar_s = bar_width_s(records, lanes, t_end)
    lane_axes = []
    for i, name in enumerate(lanes):
        ax = fig.add_subplot(grid[1 + i, 0], sharex=lane_axes[0] if lane_axes else None,
                             sharey=lane_axes[0] if lane_axes else None)
        _lane(ax, name, [r for r in records if r["stream"] == name], [e for e in errors if e["stream"] == name],
              summary["streams"].get(name, {}), bar_s)
        ax.tick_params(labelbottom=False)
        lane_axes.append(ax)
    if lane_axes:
        lane_axes[0].set_xlim(0, t_end)
        top = max((r["total"] for r in records), default=1.0)
        lane_axes[0].set_ylim(0, top * 1.15)
        lane_axes[0].set_title("latency per frame, one lane per stream (ms; stages stacked, dot = total)",
                               fontsize=10, loc="left")
    colours = {name: f"C{i % 10}" for i, name in enumerate(lanes)}
    age_ax = fig.add_subplot(grid[1 + len(lanes), 0], sharex=lane_axes[0] if lane_axes else None)
    _age(age_ax, records, lanes, colours, summary)
    age_ax.tick_params(labelbottom=False)
    drops_ax = fig.add_subplot(grid[2 + len(lanes), 0], sharex=age_ax)
    _drops(drops_ax, lanes, colours, summary)
    drops_ax.set_xlim(0, t_end)
    if lanes:
        _medians(fig.add_subplot(grid[1:1 + len(lanes), 1]), lanes, summary)
    _histogram(fig.add_subplot(grid[1 + len(lanes):, 1]), records, lanes, colours, summary)
    return fig


def _title(ax, summary: dict, head: list[str], sources: list[tuple[str, bool]]) -> None:
    ax.axis("off")
    model = summary.get("title", {}).get("model") or "model"
    lines: list[tuple[str, dict]] = [(f"cobra-edge profile: {model}", {"fontsize": 13, "fontweight": "bold"})]
    lines += [(text, {"fontsize": 9.5}) for text in head]
    lines += [(text, {"fontsize": 9.5, "color": "#b00000", "fontweight": "bold"} if fast else {"fontsize": 9.5})
              for text, fast in sources]
    lines = [(part, style) for text, style in lines for part in textwrap.wrap(text, TITLE_WIDTH_CHARS)]
    step = 1.0 / max(len(lines), 1)
    for i, (text, style) in enumerate(lines):
        label = ax.text(0.0, 1.0 - i * step, text, transform=ax.transAxes, va="top", ha="left", **style)
        label.set_in_layout(False)  # the block's height is planned (build_figure); the panels keep their widths


def bar_width_s(records: list[dict], lanes: list[str], t_end_s: float) -> float:
    """Width of a frame's bar in the lanes (s): 0.8 of the shortest lane's median interval between answers."""
    gaps = []
    for name in lanes:
        done = np.sort([r["done_s"] for r in records if r["stream"] == name])
        if done.size > 1:
            gaps.append(float(np.median(np.diff(done))))
    return 0.8 * min(gaps) if gaps and min(gaps) > 0 else t_end_s / 50


def _bars(ax, t, lower, upper, width_s: float, colour: str) -> None:
    """Bars from ``lower`` to ``upper`` centred on ``t``, ``width_s`` wide, as one polygon collection (fast for
    thousands of frames): each bar's two edges, then a break."""
    x = np.stack([t - width_s / 2, t + width_s / 2, t + width_s / 2], axis=1).ravel()
    y0, y1 = (np.repeat(v, 3) for v in (lower, upper))
    where = np.tile([True, True, False], t.size)
    ax.fill_between(x, y0, y1, where=where, color=colour, linewidth=0)


def _lane(ax, name: str, mine: list[dict], errors: list[dict], figures: dict, bar_s: float) -> None:
    ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=10, fontweight="bold")
    ax.grid(axis="y", alpha=0.3)
    t = np.array([r["done_s"] for r in mine])
    if t.size:
        lower = np.zeros(t.size)
        for part in PARTS:
            upper = lower + np.array([r[part] for r in mine])
            _bars(ax, t, lower, upper, bar_s, PART_COLOURS[part])
            lower = upper
        totals = np.array([r["total"] for r in mine])
        _bars(ax, t, lower, np.maximum(lower, totals), bar_s, OTHER_COLOUR)
        ax.plot(t, totals, ".", color="black", markersize=3)
    for e in errors[:200]:
        ax.axvline(e["at_s"], color="red", alpha=0.5, linewidth=1)
    total = figures.get("stages_ms", {}).get("total")
    if total:
        for key, style in (("p50", P50_STYLE), ("p99", P99_STYLE)):
            ax.axhline(total[key], **style)
            ax.text(0.998, total[key], f"{key} {total[key]:.1f} ms", transform=ax.get_yaxis_transform(),
                    ha="right", va="bottom", fontsize=7.5, color=style["color"])
    else:
        ax.text(0.5, 0.5, "no frame answered", transform=ax.transAxes, ha="center", va="center", color="#b00000")


def _age(ax, records: list[dict], lanes: list[str], colours: dict, summary: dict) -> None:
    ax.set_title("frame age at the answer (capture -> answer, ms)", fontsize=10, loc="left")
    ax.grid(alpha=0.3)
    for name in lanes:
        mine = [r for r in records if r["stream"] == name and r["age_at_answer_ms"] is not None]
        if mine:
            ax.plot([r["done_s"] for r in mine], [r["age_at_answer_ms"] for r in mine], ".-", color=colours[name],
                    markersize=3, linewidth=0.8, label=name)
    age = summary.get("age_at_answer_ms")
    if age:
        ax.axhline(age["p50"], label=f"p50 {age['p50']:.1f}", **P50_STYLE)
        ax.axhline(age["p99"], label=f"p99 {age['p99']:.1f}", **P99_STYLE)
    max_age = summary.get("title", {}).get("max_age_ms")
    if max_age:
        ax.axhline(max_age, color="#7f3fbf", linewidth=1, label=f"max age {max_age:g}")
    if not age:
        ax.text(0.5, 0.5, "no frame with a capture timestamp answered", transform=ax.transAxes, ha="center")
    ax.set_ylim(bottom=0)
    _legend(ax, fontsize=7.5, loc="upper left", ncol=min(len(lanes) + 3, 8), framealpha=0.9)


def _drops(ax, lanes: list[str], colours: dict, summary: dict) -> None:
    total = sum(summary["streams"].get(n, {}).get("dropped", 0) for n in lanes)
    ax.set_title(f"frames dropped per second (superseded or stale): {total} in all", fontsize=10, loc="left")
    ax.set_xlabel("time since the start (s)")
    ax.grid(alpha=0.3)
    for name in lanes:
        bins = summary["streams"].get(name, {}).get("drops_per_s", [])
        if bins:
            edges = np.arange(len(bins) + 1, dtype=float)
            ax.stairs(bins, edges, color=colours[name], linewidth=1.2, label=name)
    ax.set_ylim(bottom=0, top=max(1, max((max(summary["streams"][n].get("drops_per_s") or [0]) for n in lanes
                                          if n in summary["streams"]), default=0)) * 1.2)


def _medians(ax, lanes: list[str], summary: dict) -> None:
    ax.set_title("median per stage, per stream (ms)", fontsize=10, loc="left")
    y = np.arange(len(lanes))
    left = np.zeros(len(lanes))
    for part in PARTS:
        widths = np.array([_p(summary, name, part, "p50") for name in lanes])
        ax.barh(y, widths, left=left, color=PART_COLOURS[part], height=0.6, label=part)
        left += widths
    for i, name in enumerate(lanes):
        p50, p99 = _p(summary, name, "total", "p50"), _p(summary, name, "total", "p99")
        ax.plot([p50, p50], [i - 0.38, i + 0.38], color="black", linewidth=1.5)
        ax.plot([p99, p99], [i - 0.38, i + 0.38], color=P99_STYLE["color"], linewidth=1.5)
        ax.text(max(p99, left[i]), i, f"  total {p50:.1f} / p99 {p99:.1f}", va="center", fontsize=7.5)
    ax.set_yticks(y, lanes)
    ax.set_ylim(len(lanes) - 0.5, -0.5)  # first stream on top, as in the lanes
    right = max([_p(summary, n, "total", "p99") for n in lanes] + [float(left.max()) if lanes else 1.0, 1e-3])
    ax.set_xlim(0, right * 1.7)
    from matplotlib.patches import Patch

    handles = ax.get_legend_handles_labels()[0] + [Patch(color=OTHER_COLOUR, label="other (total - stages)")]
    ax.legend(handles=handles, fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=3)
    ax.grid(axis="x", alpha=0.3)


def _p(summary: dict, stream: str, stage: str, key: str) -> float:
    q = summary["streams"].get(stream, {}).get("stages_ms", {}).get(stage)
    return q[key] if q else 0.0


def _histogram(ax, records: list[dict], lanes: list[str], colours: dict, summary: dict) -> None:
    ax.set_title("total latency, all frames", fontsize=10, loc="left")
    ax.set_xlabel("ms per frame")
    shown = [n for n in lanes if any(r["stream"] == n for r in records)]
    if shown:
        ax.hist([[r["total"] for r in records if r["stream"] == n] for n in shown], bins=min(40, len(records)),
                stacked=True, color=[colours[n] for n in shown], label=shown)
    total = summary.get("stages_ms", {}).get("total")
    if total:
        ax.axvline(total["p50"], label=f"p50 {total['p50']:.1f}", **P50_STYLE)
        ax.axvline(total["p99"], label=f"p99 {total['p99']:.1f}", **P99_STYLE)
    _legend(ax, fontsize=7.5)


def _legend(ax, **options) -> None:
    """A legend when the panel drew something labelled (an empty one only warns)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**options)
