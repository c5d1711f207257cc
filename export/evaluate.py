"""``cobra-edge eval``: accuracy per question family through the runtime, with the PyTorch reference beside it on
the same items, their exact agreement, and the issue's floors checked; JSON under bench/results and a Markdown
table. With ``--preset``, a tiny connector preset is trained (export/train.py), exported and then evaluated.

The runtime side (edge/evaluate.py) is torch-free; this file adds the reference (export/reference.py), which
needs the weights the artifact was exported from: its manifest says where they came from (edge/provenance.py).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edge.evaluate import EvalResult, agreement, evaluate, format_table
from edge.manifest import Manifest
from edge.provenance import describe, weights_info
from edge.runtime import Runtime
from edge.tokenizer import PromptTokenizer
from edge.world import FAMILIES, Item, eval_items

from .model import CobraModel

SCHEMA = "cobra-edge-eval/1"
RESULTS_DIR = Path(__file__).resolve().parents[1] / "bench" / "results"
EVAL_SEED = 1000  # held out: training batches are drawn from (seed, step, ...) and validation from seed 999
CHANCE = {"motion": 1 / 5}
# the floors: fp32 through the runtime
FLOORS = {"colour": 0.95, "position": 0.95, "presence": 0.95, "path": 0.90, "count": 0.90, "motion": 0.85}


@dataclass
class EvalOptions:
    precisions: tuple[str, ...] = ("fp32", "int8", "fp16")
    modes: tuple[str, ...] = ("continuous", "reset")
    batch: int = 8
    path: str = "direct"
    per_family: int = 500
    seed: int = EVAL_SEED
    families: tuple[str, ...] = FAMILIES
    reference: str = "auto"  # "auto" (from the manifest's weight source), "none", or a trained .safetensors
    threads: int = 2
    max_new_tokens: int = 4
    device: str = "cpu"  # engines/devices.py
    head_views: int = 500  # held-out camera views for the action heads' error (artifacts with heads; 0: none)
    head_seed: int = EVAL_SEED  # edge/sim/examples.py seed (the heads train on seed 0)


def reference_model(manifest: Manifest, reference: str = "auto") -> tuple[CobraModel | None, str]:
    """The PyTorch model the artifact was exported from, and how it was found (None when it cannot be)."""
    from .model import build_random
    from .weights import EMBEDDED, load_trained, sha256

    if reference == "none":
        return None, "not run (--reference none)"
    if reference != "auto":
        return load_trained(reference)[0], f"checkpoint {reference}"
    info = weights_info(manifest)
    if info["source"] == "random":
        from .config import ModelConfig

        return build_random(ModelConfig.from_dict(manifest.model), seed=int(info.get("seed", 0))), "random weights"
    if info["source"] in ("trained", "checkpoint"):
        path = EMBEDDED if info["source"] == "trained" else Path(info.get("path", ""))
        if path.is_file() and sha256(path) == info.get("sha256"):
            return load_trained(path)[0], str(path)
        return None, f"{path} is missing or differs from the weights the artifact was exported from"
    return None, "the manifest does not say where the weights came from"


def reference_answers(model: CobraModel, tokenizer: PromptTokenizer, items: list[Item], mode: str,
                      max_new_tokens: int) -> EvalResult:
    """The PyTorch reference's answers to the same items, one stream, reset before each item."""
    import torch

    from .reference import ReferenceStream

    stream = ReferenceStream(model, tokenizer, mode)
    t0 = time.perf_counter()
    answers = []
    with torch.no_grad():
        for item in items:
            stream.reset()
            answers.append([tokenizer.decode(stream.ask(f, q.prompt, max_new_tokens, b))
                            for f, b, q in zip(item.frames(), item.boxes(), item.questions)])
    return EvalResult([it.family for it in items], [it.question.answer for it in items], answers,
                      time.perf_counter() - t0)


def _load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def check_floors(doc: dict) -> list[dict]:
    """The issue's floors against this run (those it has the runs for)."""
    runs = {(r["precision"], r["mode"]): r for r in doc["runs"]}
    out = []

    def floor(name, value, required, ok):
        out.append({"floor": name, "value": value, "required": required, "ok": bool(ok)})

    fp32 = runs.get(("fp32", "continuous")) or runs.get(("fp32", "reset"))
    if fp32:
        for f, need in FLOORS.items():
            if f in fp32["accuracy"] and (f != "motion" or fp32["mode"] == "continuous"):
                floor(f"fp32 {f}" + (" (continuous)" if f == "motion" else ""), fp32["accuracy"][f], f">= {need}",
                      fp32["accuracy"][f] >= need)
        if "agreement_with_reference" in fp32:
            a = fp32["agreement_with_reference"]["last"]
            floor("fp32 runtime = PyTorch reference", a, ">= 0.995", a >= 0.995)
    reset = runs.get(("fp32", "reset"))
    if reset and "motion" in reset["accuracy"]:
        v = reset["accuracy"]["motion"]
        floor("fp32 motion (reset) <= chance + 10 points", v, f"<= {CHANCE['motion'] + 0.10:.2f}",
              v <= CHANCE["motion"] + 0.10)
    for precision, tol in (("int8", 0.02), ("fp16", 0.005)):
        for mode in doc["options"]["modes"]:
            base, r = runs.get(("fp32", mode)), runs.get((precision, mode))
            if base and r:
                worst = max(base["accuracy"][f] - r["accuracy"][f] for f in r["accuracy"])
                floor(f"{precision} within {100 * tol:g} points of fp32 ({mode})", worst, f"<= {tol}", worst <= tol)
    for part, suffix in (("heads", ""), ("continuous", " (continuous)")):
        where = doc.get("heads", {}) if part == "heads" else doc.get("heads", {}).get("continuous", {})
        heads = where.get("runs", {}).get("fp32")
        if not heads:
            continue
        for k, bound in doc["heads"]["bounds"].items():
            if k in heads:
                low = "mae" in k
                floor(f"fp32 head {k}{suffix}", heads[k], f"{'<=' if low else '>='} {bound}",
                      heads[k] <= bound if low else heads[k] >= bound)
        if "max_abs_diff_to_reference" in heads:
            d = heads["max_abs_diff_to_reference"]
            floor(f"fp32 head values = PyTorch reference{suffix}", d, "<= 1e-4", d <= 1e-4)
    return out


def run_eval(directory: str | Path, opts: EvalOptions, out_dir: Path = RESULTS_DIR,
             say: Callable[[str], None] = print) -> tuple[dict, Path]:
    """Evaluate an artifact (see the module docstring); -> (the document, the JSON path; the .md beside it)."""
    import torch

    torch.set_num_threads(opts.threads)
    manifest = Manifest.load(directory)
    items = eval_items(opts.seed, opts.per_family, opts.families)
    say(f"{len(items)} items ({opts.per_family} per family, seed {opts.seed}); weights: {describe(weights_info(manifest))}")
    load_before = _load_average()
    runs, refs = [], {}
    model, found = reference_model(manifest, opts.reference)
    say(f"PyTorch reference: {found}")
    tokenizer = PromptTokenizer(manifest.tokenizer_path, manifest.prompt_template, manifest.eos_token_id, 512)
    for mode in opts.modes:
        if model is not None:
            refs[mode] = reference_answers(model, tokenizer, items, mode, opts.max_new_tokens)
            say(f"reference, {mode}: " + _fmt(refs[mode].accuracy) + f" ({refs[mode].seconds:.0f} s)")
        for precision in opts.precisions:
            rt = Runtime.load(directory, precision=precision, max_streams=opts.batch, threads=opts.threads,
                              device=opts.device)
            result = evaluate(rt, items, mode, opts.batch, opts.path, opts.max_new_tokens)
            run = {"precision": precision, "mode": mode, "path": opts.path, "batch": opts.batch,
                   "accuracy": result.accuracy, "counts": result.counts, "seconds": round(result.seconds, 2),
                   "errors": result.errors[:10], "error_count": len(result.errors),
                   "frame_ms_median": float(np.median(result.frame_ms)) if result.frame_ms else None,
                   "visual_tokens": manifest.visual_tokens}
            if mode in refs:
                run["agreement_with_reference"] = agreement(result.answers, refs[mode].answers)
            runs.append(run)
            agree = run.get("agreement_with_reference", {}).get("last")
            say(f"runtime {precision}, {mode}: " + _fmt(result.accuracy)
                + (f"; agrees with reference {100 * agree:.1f}%" if agree is not None else "")
                + f" ({result.seconds:.0f} s)")
    doc = {
        "schema": SCHEMA, "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "artifact": str(directory),
        "model": manifest.model.get("name"), "weights": describe(weights_info(manifest)),
        "items": {"seed": opts.seed, "per_family": opts.per_family, "families": list(opts.families)},
        "options": {k: (list(v) if isinstance(v, tuple) else v) for k, v in opts.__dict__.items()},
        "machine": {"cpu_count": os.cpu_count(), "threads": opts.threads, "load_average_before": load_before,
                    "load_average_after": _load_average()},
        "reference": {"found": found, **{mode: {"accuracy": r.accuracy, "seconds": round(r.seconds, 2)}
                                         for mode, r in refs.items()}},
        "runs": runs,
    }
    if manifest.heads and opts.head_views:
        doc["heads"] = eval_heads(directory, manifest, model, tokenizer, opts, say)
    doc["floors"] = check_floors(doc)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"eval-{doc['model']}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    path.with_suffix(".md").write_text(markdown(doc) + "\n")
    return doc, path


def eval_heads(directory, manifest: Manifest, model: CobraModel | None, tokenizer, opts: EvalOptions,
               say: Callable[[str], None] = print) -> dict:
    """The action heads' error on held-out camera views of edge/sim's world, through the runtime's batched act at
    each precision, and the PyTorch reference's (the heads file the manifest names) beside it: views of reset
    streams (``head_views`` of them), and, when the options' modes hold continuous, whole held-out episodes through
    continuous streams (one per 100 views, at least one; edge/sim/examples.py ``approach``), as many again that
    drive on past the stop (``overshoot``: the frames where a stop that comes late must still fire, which plain
    approaches end before)."""
    from edge.sim.examples import approach, head_examples
    from edge.sim.head_eval import HEAD_BOUNDS, act_values, act_values_continuous, agreement, errors

    from .train_heads import OVERSHOOT_INDEX

    views = head_examples(opts.head_seed, opts.head_views)
    out: dict = {"views": opts.head_views, "seed": opts.head_seed, "bounds": HEAD_BOUNDS, "runs": {}}
    k = max(1, opts.head_views // 100) if "continuous" in opts.modes else 0
    episodes = ([approach(opts.head_seed, i) for i in range(k)]
                + [approach(opts.head_seed, OVERSHOOT_INDEX + i, overshoot=True) for i in range(k)])
    frames = [e for episode in episodes for e in episode]
    if episodes:
        out["continuous"] = {"episodes": len(episodes), "overshooting": k, "frames": len(frames), "runs": {}}
    ref = {}
    heads_file = manifest.heads_source.get("path")
    if model is not None and heads_file and Path(heads_file).is_file():
        from .heads import load_heads
        from .train_heads import head_values, head_values_continuous

        heads, _ = load_heads(heads_file)
        ref["reset"] = head_values(model, tokenizer, heads, views)
        out["reference"] = errors(ref["reset"], views)
        say("reference heads: " + _fmt_heads(out["reference"]))
        if episodes:
            ref["continuous"] = head_values_continuous(model, tokenizer, heads, episodes)
            out["continuous"]["reference"] = errors(ref["continuous"], frames)
            say("reference heads, continuous: " + _fmt_heads(out["continuous"]["reference"]))
    for precision in opts.precisions:
        rt = Runtime.load(directory, precision=precision, max_streams=opts.batch, threads=opts.threads,
                          device=opts.device)
        for mode, run_values, examples, into in (
                ("reset", lambda: act_values(rt, views, opts.batch), views, out),
                ("continuous", lambda: act_values_continuous(rt, episodes, opts.batch), frames,
                 out.get("continuous"))):
            if into is None:
                continue
            t0 = time.perf_counter()
            values = run_values()
            run = {**errors(values, examples), "seconds": round(time.perf_counter() - t0, 2)}
            if mode in ref:
                run["max_abs_diff_to_reference"] = agreement(values, ref[mode])
            into["runs"][precision] = run
            say(f"runtime heads {precision}, {mode}: " + _fmt_heads(run))
    return out


def _fmt_heads(e: dict) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in e.items() if k.endswith(("_mae", "_mae_m", "_accuracy")))


def markdown(doc: dict) -> str:
    lines = [f"# {doc['model']}: accuracy per family (%), {doc['items']['per_family']} items per family, seed "
             f"{doc['items']['seed']}", "", f"Weights: {doc['weights']}", "", format_table(doc), ""]
    for mode, r in doc["reference"].items():
        if isinstance(r, dict):
            lines.append(f"- PyTorch reference ({mode}): " + _fmt(r["accuracy"]))
    lines.append("")
    lines += ["| floor | value | required | reached |", "|---|---:|---|---|"]
    lines += [f"| {f['floor']} | {f['value']:.3f} | {f['required']} | {'yes' if f['ok'] else 'NO'} |"
              for f in doc["floors"]]
    if "heads" in doc:
        h = doc["heads"]
        lines += _heads_table(f"Action heads on {h['views']} held-out camera views of reset streams (edge/sim, seed "
                              f"{h['seed']}; bearing and distance where the target is visible):", h, h["bounds"])
        if "continuous" in h:
            c = h["continuous"]
            lines += _heads_table(f"Action heads on continuous streams: {c['episodes']} held-out episodes "
                                  f"({c.get('overshooting', 0)} of them driving on past the stop), {c['frames']} "
                                  f"frames, each episode one stream (edge/sim approach, seed {h['seed']}):", c,
                                  h["bounds"])
    return "\n".join(lines)


def _heads_table(title: str, part: dict, bounds: dict) -> list[str]:
    keys = [k for k in ("bearing_mae", "distance_mae_m", "visible_accuracy", "blocked_accuracy")
            if any(k in r for r in part["runs"].values())]
    lines = ["", title, "", "| | " + " | ".join(keys) + " | max diff to reference |",
             "|---|" + "---:|" * (len(keys) + 1)]
    rows = ([("PyTorch reference", part["reference"])] if "reference" in part else []) + list(part["runs"].items())
    for name, r in rows:
        diff = r.get("max_abs_diff_to_reference")
        lines.append(f"| {name} | " + " | ".join(f"{r[k]:.3f}" for k in keys) + " | "
                     + (f"{diff:.2e}" if diff is not None else "") + " |")
    lines.append("| bound | " + " | ".join(f"{'<=' if 'mae' in k else '>='} {bounds[k]}" for k in keys) + " | |")
    return lines


def _fmt(acc: dict[str, float]) -> str:
    return ", ".join(f"{f} {100 * a:.1f}%" for f, a in acc.items())


def train_then_eval(preset: str, steps: int, opts: EvalOptions, work_dir: Path, out_dir: Path = RESULTS_DIR,
                    seed: int = 0, say: Callable[[str], None] = print) -> tuple[dict, Path]:
    """Train ``preset`` for ``steps`` steps, export it (fp32 + the evaluated precisions), evaluate it."""
    from .cli import export_trained
    from .train import TrainOptions, train

    weights = work_dir / f"{preset}-seed{seed}-{steps}.safetensors"
    if not weights.exists():
        train(TrainOptions(preset=preset, steps=steps, seed=seed), weights, say=say)
    art = work_dir / f"{preset}-seed{seed}-{steps}"
    export_trained(art, weights, overwrite=True, show_progress=False, precisions=("fp32", *opts.precisions))
    return run_eval(art, EvalOptions(**{**opts.__dict__, "reference": str(weights)}), out_dir, say)

