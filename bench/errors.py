"""Where an artifact's answers go wrong, read off the scenes' geometry (issue 17; docs/training.md, "Stages 5 and 6").

    python -m bench.errors DIR [--per-family 500] [--families presence motion] [--out bench/results]

Asks the held-out items (seed 1000, cobra-edge eval's) through the runtime (reset mode for the single-frame
families, continuous for motion) and splits each family's accuracy by what makes it hard:
- every family: how many shapes the last frame holds (1 to 4);
- presence: the question's kind of negative: ``yes``; ``colour only`` (the colour is there, on another kind, and
  the kind is not); ``colour and kind elsewhere`` (both are there, never together: the binding itself); ``kind
  only``; ``neither``;
- motion: frames in the item (2 to 4) and the confusion of the truth with the answer.
Written as ``errors-<model>-<date>.json``. Torch-free.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from .timing import RESULTS_DIR, write_result

NEGATIVES = ("yes", "colour only", "colour and kind elsewhere", "kind only", "neither")


def presence_kind(item) -> str:
    """The presence item's kind of question (``NEGATIVES``), from the last scene's shapes and the prompt's words."""
    from edge.world import spec

    words = item.question.prompt.rstrip("?").split()
    colour = next(w for w in words if w in spec.COLOURS)
    kind = next(w for w in words if w in spec.SHAPES)
    shapes = item.scenes[-1].shapes
    if any(s.colour == colour and s.kind == kind for s in shapes):
        return "yes"
    has_colour, has_kind = any(s.colour == colour for s in shapes), any(s.kind == kind for s in shapes)
    return {(True, True): "colour and kind elsewhere", (True, False): "colour only",
            (False, True): "kind only", (False, False): "neither"}[(has_colour, has_kind)]


def _share(right: Counter, total: Counter) -> dict:
    return {str(k): {"right": right[k], "of": total[k], "accuracy": right[k] / total[k]} for k in sorted(total)}


def breakdown(items: list, answers: list[str]) -> dict:
    """items (edge.world Items of one family), answers (the last answer of each, as given) -> the splits above."""
    from edge.evaluate import accuracy, normalise

    family = items[0].family
    right: dict[str, Counter] = {}
    total: dict[str, Counter] = {}

    def tally(split: str, key, ok: bool) -> None:
        total.setdefault(split, Counter())[key] += 1
        right.setdefault(split, Counter())[key] += ok

    confusion: Counter = Counter()
    for item, answer in zip(items, answers, strict=True):
        if item.family != family:
            raise ValueError(f"breakdown: items of one family expected; got {family!r} and {item.family!r}")
        truth, said = item.question.answer, normalise(answer)
        ok = said == truth
        tally("shapes", len(item.scenes[-1].shapes), ok)
        if family == "presence":
            tally("question", presence_kind(item), ok)
        if family == "motion":
            tally("frames", len(item.scenes), ok)
            confusion[(truth, said)] += 1
    doc = {"family": family, "items": len(items),
           "accuracy": accuracy([family] * len(items), [i.question.answer for i in items], answers)[family]}
    doc.update({split: _share(right[split], total[split]) for split in total})
    if family == "motion":
        doc["confusion"] = [{"truth": t, "answer": a, "count": n} for (t, a), n in sorted(confusion.items())]
    return doc


def main(argv: list[str] | None = None) -> int:
    from edge.evaluate import evaluate
    from edge.runtime import Runtime
    from edge.world import FAMILIES, eval_items

    from .timing import machine_info

    ap = argparse.ArgumentParser(prog="python -m bench.errors", description=__doc__.split("\n")[0])
    ap.add_argument("dir", help="an exported artifact (cobra-edge export)")
    ap.add_argument("--per-family", type=int, default=500)
    ap.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    ap.add_argument("--seed", type=int, default=1000, help="held-out items' seed (cobra-edge eval's)")
    ap.add_argument("--out", default=str(RESULTS_DIR))
    args = ap.parse_args(argv)
    rt = Runtime.load(args.dir)
    from edge.provenance import describe

    doc = {"artifact": str(Path(args.dir).resolve()), "model": rt.manifest.model.get("name", "model"),
           "weights": describe(rt.manifest.raw.get("weights_source") or {}), "seed": args.seed,
           "per_family": args.per_family, "families": {}, "machine": machine_info(threads=2)}
    for family in args.families:
        items = eval_items(args.seed, args.per_family, families=(family,))
        mode = "continuous" if family == "motion" else "reset"
        res = evaluate(rt, items, mode=mode, batch=8)
        doc["families"][family] = {"mode": mode, **breakdown(items, [a[-1] for a in res.answers])}
        found = doc["families"][family]
        print(f"{family} ({mode}): {found['accuracy']:.3f}")
        for split in ("shapes", "question", "frames"):
            if split in found:
                print(f"  by {split}: " + ", ".join(f"{k} {v['right']}/{v['of']}" for k, v in found[split].items()))
    write_result(args.out, f"errors-{doc['model']}", doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
