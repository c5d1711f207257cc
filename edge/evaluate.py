"""Accuracy through the runtime: the synthetic world's items (edge/world) asked of an artifact, per family.

    rt = Runtime.load("artifacts/tiny")
    result = evaluate(rt, eval_items(seed=1000, per_family=500), mode="continuous", batch=8, path="scheduler")
    result.accuracy      # {"colour": 0.99, ...}

Every item runs on a stream of its own (``batch`` streams answer ``batch`` items at a time, reset before each
item): its frames in order, each with its question, the answers decoded greedily; the item's last answer is
scored against the scene's exact answer (trimmed, lower case). ``path``: "direct" answers each round with one
``Runtime.answer`` call; "scheduler" submits the frames to a ``FrameScheduler`` (grouped by prompt, since a
scheduler asks one prompt) and lets it batch them. Torch-free: the PyTorch reference's answers are computed in
export/evaluate.py and compared here (``agreement``).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .batch import Request
from .runtime import Runtime
from .world import FAMILIES, Item

PATHS = ("direct", "scheduler")


@dataclass
class EvalResult:
    """Per item: every frame's answer text (``answers[i][k]``); ``accuracy`` per family of the last answers."""

    families: list[str]
    truths: list[str]
    answers: list[list[str]]
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    frame_ms: list[float] = field(default_factory=list)  # each answered frame's total time (its batch's stages)

    @property
    def accuracy(self) -> dict[str, float]:
        return accuracy(self.families, self.truths, [a[-1] for a in self.answers])

    @property
    def counts(self) -> dict[str, int]:
        return {f: self.families.count(f) for f in dict.fromkeys(self.families)}


def normalise(text: str) -> str:
    return text.strip().lower().rstrip(".")


def accuracy(families: list[str], truths: list[str], answers: list[str]) -> dict[str, float]:
    right: dict[str, list[bool]] = {}
    for f, t, a in zip(families, truths, answers):
        right.setdefault(f, []).append(normalise(a) == t)
    return {f: float(np.mean(v)) for f, v in right.items()}


def agreement(a: list[list[str]], b: list[list[str]]) -> dict[str, float]:
    """Exact agreement of two answer sets: of the items' last answers, and of every answer of every frame."""
    last = float(np.mean([x[-1] == y[-1] for x, y in zip(a, b)]))
    every = [u == v for x, y in zip(a, b) for u, v in zip(x, y)]
    return {"last": last, "every_frame": float(np.mean(every))}


def _prepared(items: list[Item]) -> list[tuple[list[np.ndarray], list[np.ndarray]]]:
    return [(item.frames(), item.boxes()) for item in items]


def evaluate(rt: Runtime, items: list[Item], mode: str = "continuous", batch: int = 1, path: str = "direct",
             max_new_tokens: int = 4) -> EvalResult:
    """Ask every item of ``items`` through ``rt`` (see the module docstring)."""
    if path not in PATHS:
        raise ValueError(f"unknown evaluation path {path!r}; use one of {PATHS}")
    if not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    boxes = rt.takes_boxes
    t0 = time.perf_counter()
    answers: list[list[str]] = [[] for _ in items]
    errors: list[str] = []
    frame_ms: list[float] = []
    sched = None
    if path == "scheduler":
        from .scheduler import FrameScheduler

        sched = FrameScheduler(rt, prompt="", max_new_tokens=max_new_tokens, max_batch=batch)
        names = [f"eval{j}" for j in range(batch)]
        for n in names:
            sched.add_stream(n, mode)
        streams = [rt.streams[n] for n in names]
    else:
        streams = [rt.open_stream(f"eval{j}", mode) for j in range(batch)]
    try:
        for start in range(0, len(items), batch):
            group = list(range(start, min(start + batch, len(items))))
            data = _prepared([items[i] for i in group])
            for s in streams:
                s.reset()
            for k in range(max(len(f) for f, _ in data)):
                live = [(j, i) for j, i in enumerate(group) if k < len(data[j][0])]
                if sched is None:
                    reqs = [Request(streams[j], data[j][0][k], items[i].questions[k].prompt, max_new_tokens,
                                    boxes=data[j][1][k] if boxes else None) for j, i in live]
                    results = rt.answer(reqs)
                else:
                    results = _through_scheduler(sched, streams, data, items, live, k, boxes)
                for (j, i), r in zip(live, results):
                    if isinstance(r, Exception):
                        errors.append(f"item {i} frame {k}: {r}")
                        answers[i].append("")
                    else:
                        answers[i].append(r.text)
                        frame_ms.append(r.profile.total)
    finally:
        for s in streams:
            s.close()
    return EvalResult([it.family for it in items], [it.question.answer for it in items], answers,
                      time.perf_counter() - t0, errors, frame_ms)


def _through_scheduler(sched, streams, data, items, live, k, boxes) -> list:
    """One round through the scheduler: frames grouped by prompt, each group submitted then answered."""
    results: dict[int, object] = {}
    by_prompt: dict[str, list] = {}
    for j, i in live:
        by_prompt.setdefault(items[i].questions[k].prompt, []).append((j, i))
    for prompt, members in by_prompt.items():
        sched.prompt = prompt
        for j, i in members:
            sched.submit(streams[j].name, data[j][0][k], boxes=data[j][1][k] if boxes else None, tag=j)
        errors: dict[str, Exception] = {}
        while sched.pending():
            for a in sched.run_once(on_error=lambda name, e: errors.__setitem__(name, e)):
                results[a.tag] = a
        for name, e in errors.items():
            results[int(name.removeprefix("eval"))] = e
    return [results[j] for j, _ in live]


def format_table(doc: dict) -> str:
    """Markdown: one row per (precision or reference, mode), one column per family, plus agreement."""
    families = [f for f in FAMILIES if any(f in r["accuracy"] for r in doc["runs"])]
    head = "| model | precision | mode | path | batch | " + " | ".join(families) + " | agrees with reference |"
    lines = [head, "|" + "---|" * (5 + len(families) + 1)]
    for r in doc["runs"]:
        cells = [f"{100 * r['accuracy'][f]:.1f}" if f in r["accuracy"] else "-" for f in families]
        agree = r.get("agreement_with_reference", {}).get("last")
        lines.append(f"| {doc['model']} | {r['precision']} | {r['mode']} | {r['path']} | {r['batch']} | "
                     + " | ".join(cells) + f" | {'-' if agree is None else f'{100 * agree:.1f}'} |")
    return "\n".join(lines)
