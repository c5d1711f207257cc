"""The action heads' error through the runtime on held-out camera views (edge/sim/examples.py), torch-free:
``cobra-edge eval`` reports it beside the PyTorch reference's (export/evaluate.py).

    rt = Runtime.load("artifacts/tiny-trained", max_streams=8)
    errors(act_values(rt, head_examples(seed=1000, n=500)), examples)
    # {"bearing_mae": ..., "distance_mae_m": ..., "visible_accuracy": ..., "blocked_accuracy": ..., ...}
    episodes = [approach(1000, i) for i in range(5)]           # continuous streams: whole episodes, in order
    errors(act_values_continuous(rt, episodes), [e for ep in episodes for e in ep])

Bearing and distance are scored where the target is visible (out of view its bearing is only "beyond the edge");
``visible`` and ``blocked`` as yes/no at 0.5.
"""

from __future__ import annotations

import numpy as np

from ..batch import Request

# what the embedded heads must reach on held-out views (the bound the eval test and docs/loop.md state)
HEAD_BOUNDS = {"bearing_mae": 0.15, "distance_mae_m": 0.30, "visible_accuracy": 0.85, "blocked_accuracy": 0.90}


def act_values(rt, examples, batch: int = 8) -> list[dict[str, float]]:
    """Every example through ``Stream.act``'s batched path, ``batch`` streams at a time (reset mode) -> head values."""
    streams = [rt.open_stream(f"heads-eval-{i}") for i in range(batch)]
    try:
        out: list[dict[str, float]] = []
        for start in range(0, len(examples), batch):
            chunk = examples[start:start + batch]
            results = rt.answer([Request(s, e.frame, e.prompt, 0, act=True) for s, e in zip(streams, chunk)])
            for r in results:
                if isinstance(r, Exception):
                    raise r
                out.append(r.outputs)
        return out
    finally:
        for s in streams:
            s.close()


def act_values_continuous(rt, episodes, batch: int = 8) -> list[dict[str, float]]:
    """Each episode (edge/sim/examples.py ``approach``: frames in order, one prompt) through its own continuous
    stream, never reset within it; ``batch`` episodes side by side, frame t of each in one batched act -> the head
    values of every frame, episodes in order."""
    out: list[dict[str, float]] = []
    for start in range(0, len(episodes), batch):
        chunk = episodes[start:start + batch]
        streams = [rt.open_stream(f"heads-eval-continuous-{k}", mode="continuous") for k in range(len(chunk))]
        try:
            values: list[list[dict]] = [[] for _ in chunk]
            for t in range(max(len(e) for e in chunk)):
                on = [k for k, e in enumerate(chunk) if t < len(e)]
                results = rt.answer([Request(streams[k], chunk[k][t].frame, chunk[k][t].prompt, 0, act=True)
                                     for k in on])
                for k, r in zip(on, results):
                    if isinstance(r, Exception):
                        raise r
                    values[k].append(r.outputs)
            out += [v for episode in values for v in episode]
        finally:
            for s in streams:
                s.close()
    return out


def errors(values: list[dict[str, float]], examples) -> dict[str, float]:
    """Head values against the examples' truth (see the module docstring)."""
    truth = {k: np.array([e.truth[k] for e in examples]) for k in ("bearing", "distance", "visible", "blocked")}
    got = {k: np.array([v[k] for v in values]) for k in truth if values and k in values[0]}
    seen = truth["visible"] > 0.5
    out: dict[str, float] = {"examples": len(examples), "visible_examples": int(seen.sum())}
    if "bearing" in got:
        out["bearing_mae"] = float(np.abs(got["bearing"] - truth["bearing"])[seen].mean())
        out["bearing_sign_accuracy"] = float((np.sign(got["bearing"]) == np.sign(truth["bearing"]))[seen].mean())
    if "distance" in got:
        out["distance_mae_m"] = float(np.abs(got["distance"] - truth["distance"])[seen].mean())
    for k in ("visible", "blocked"):
        if k in got:
            out[f"{k}_accuracy"] = float(((got[k] > 0.5) == (truth[k] > 0.5)).mean())
    out["blocked_rate"] = float(truth["blocked"].mean())
    return out


def agreement(a: list[dict[str, float]], b: list[dict[str, float]]) -> float:
    """The largest |a - b| over every value of every example (runtime against reference)."""
    return float(max((abs(x[k] - y[k]) for x, y in zip(a, b) for k in x), default=0.0))
