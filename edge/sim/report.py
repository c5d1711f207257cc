"""A sweep of the loop over policies, stream modes and latency multipliers, and its outputs: one JSON (every
number, the seeds, the latency source, the machine's load), a Markdown table and a PNG of success rate against
the effective latency (matplotlib optional)."""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

from .camera import CameraConfig
from .loop import MIN_MEASURED_MS, Results, run_episodes
from .world import WorldConfig

FORMAT = "cobra-edge-loop/1"


def sweep(policies: list[tuple], n: int, seed: int, latency_ms: float | None, multipliers, world: WorldConfig,
          camera: CameraConfig, say=print) -> list[Results]:
    """Every (policy, mode) of ``policies`` — tuples (policy, mode or None, latency_ms override or None) — at
    every multiplier, ``n`` episodes each from ``seed``. A policy's own latency override (the oracle has no
    model to time) replaces ``latency_ms``."""
    runs = []
    for policy, mode, own_latency in policies:
        latency = own_latency if own_latency is not None else latency_ms
        for m in multipliers:
            t0 = time.perf_counter()
            r = run_episodes(policy, n, seed, latency, m, world, camera, mode)
            s = r.summary()
            say(f"{policy.name:<7} {mode or '-':<10} x{m:<4g} {s['latency_ms_median']:8.1f} ms/tick: success "
                f"{s['successes']}/{n}, collisions {s['collisions']}, timeouts {s['timeouts']}, {s['ticks']} ticks "
                f"({time.perf_counter() - t0:.1f} s)")
            runs.append(r)
    return runs


def document(runs: list[Results], n: int, seed: int, latency_ms: float | None, multipliers, world: WorldConfig,
             camera: CameraConfig, artifact: str | None, load_before, wall_s: float, extra: dict | None = None) -> dict:
    """The JSON document of a sweep (``format`` FORMAT)."""
    return {
        "format": FORMAT,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "artifact": artifact,
        "episodes": n,
        "seeds": list(range(seed, seed + n)),
        "latency": {"source": "measured" if latency_ms is None else "fixed", "base_ms": latency_ms,
                    "multipliers": list(multipliers), "min_measured_ms": MIN_MEASURED_MS,
                    "note": "simulated time per tick = (the policy call's wall time, or base_ms) x multiplier"},
        "world": asdict(world),
        "camera": asdict(camera),
        "machine": {"load_average_before": list(load_before), "load_average_after": list(os.getloadavg()),
                    "cpu_count": os.cpu_count(), "cpu": platform.machine(), "python": platform.python_version()},
        "wall_s": wall_s,
        **(extra or {}),
        "runs": [r.to_dict() for r in runs],
    }


def markdown(doc: dict) -> str:
    """One row per (policy, mode, multiplier): success, median time to goal, collisions, timeouts."""
    lines = [f"{doc['episodes']} episodes per row (seeds {doc['seeds'][0]}..{doc['seeds'][-1]}); latency "
             f"{_latency_words(doc)}; load average {doc['machine']['load_average_before'][0]:.2f} before, "
             f"{doc['machine']['load_average_after'][0]:.2f} after, {doc['machine']['cpu_count']} CPUs.", "",
             "| policy | mode | latency | ms per tick (median) | success | median time to goal (s) | collisions "
             "| timeouts | ticks | policy call (ms, median) |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in doc["runs"]:
        s = r["summary"]
        source = f"{r['latency_ms']:g} ms" if r["latency_source"] == "fixed" else "measured"
        t = "-" if s["median_time_to_goal_s"] is None else f"{s['median_time_to_goal_s']:.2f}"
        lines.append(f"| {r['policy']} | {r['mode'] or '-'} | {source} x{r['multiplier']:g} | "
                     f"{s['latency_ms_median']:.1f} | {100 * s['success_rate']:.0f} % "
                     f"({s['successes']}/{s['episodes']}) "
                     f"| {t} | {s['collisions']} | {s['timeouts']} | {s['ticks']} | {s['policy_ms_median']:.2f} |")
    return "\n".join(lines)


def _latency_words(doc: dict) -> str:
    lat = doc["latency"]
    mult = ", ".join(f"x{m:g}" for m in lat["multipliers"])
    if lat["source"] == "fixed":
        return f"fixed {lat['base_ms']:g} ms per tick, {mult}"
    oracle = doc.get("oracle_latency_ms")
    return (f"each model call's measured wall time (at least {lat['min_measured_ms']:g} ms)"
            + (f", the oracle's fixed {oracle:g} ms (nothing to measure)" if oracle else "") + f"; {mult}")


def plot(doc: dict, path: Path) -> bool:
    """Success rate against the effective latency (ms per tick, log axis), one line per (policy, mode); False
    when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(7, 5.2))
    lines: dict[tuple, list] = {}
    for r in doc["runs"]:
        label = r["policy"] + (f" ({r['mode']})" if r["mode"] else "")
        if r["latency_source"] == "fixed":
            label += f", {r['latency_ms']:g} ms x multiplier"
        else:
            label += ", measured x multiplier"
        lines.setdefault(label, []).append((r["summary"]["latency_ms_median"], r["summary"]["success_rate"]))
    for label, points in lines.items():
        points.sort()
        ax.plot([p[0] for p in points], [100 * p[1] for p in points], "o-", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("latency per tick (ms, simulated; median)")
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(-3, 103)
    k = doc.get("time_scale", 1.0)
    ax.set_title(f"closed loop: {doc['episodes']} seeded episodes per point"
                 + (f"; world x{k:g} faster (knee at {100 / k:g} ms)" if k != 1 else ""), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def write(doc: dict, out_dir: str | os.PathLike, stem: str) -> dict[str, Path]:
    """OUT/STEM.json, .md and (with matplotlib) .png, each written atomically. -> the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md"}
    _atomic(paths["json"], dumps(doc) + "\n")
    _atomic(paths["md"], markdown(doc) + "\n")
    png = out / f"{stem}.png"
    tmp = png.with_name(png.name + ".tmp.png")
    if plot(doc, tmp):
        os.replace(tmp, png)
        paths["png"] = png
    return paths


def dumps(doc: dict) -> str:
    """JSON, indented, except one line per episode with floats to 6 decimals (a 100-episode sweep of 13 points
    stays near 100 kB)."""
    episodes = []

    def mark(run: dict) -> dict:
        out = dict(run)
        out["episodes"] = []
        for e in run["episodes"]:
            out["episodes"].append(f"@@episode-{len(episodes)}@@")
            episodes.append({k: round(v, 6) if isinstance(v, float) else v for k, v in e.items()})
        return out

    text = json.dumps({**doc, "seeds": "@@seeds@@", "runs": [mark(r) for r in doc["runs"]]}, indent=1)
    text = text.replace('"@@seeds@@"', json.dumps(doc["seeds"]), 1)
    for i, e in enumerate(episodes):
        text = text.replace(f'"@@episode-{i}@@"', json.dumps(e, separators=(",", ":")), 1)
    return text


def _atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
