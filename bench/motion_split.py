"""Where the motion family is answered and where not: held-out motion items (cobra-edge eval's seed), answered by
the PyTorch reference in continuous mode, split by the item's number of frames and by whether the named shape's
centre left its 4 x 4 token cell; writes bench/results/motion-split-<name>-<date>.json.

    python -m bench.motion_split --weights W [--items 300] [--name stage8]

Why: the family's accuracy alone (about 53 %) does not say what the state fails to carry. If the answers were read
off which token a shape sits in, items whose shape changed cells would be answered and the others not; if the
state compared positions finely but forgot, two-frame items (the frame before is the most recent) would be the
easy ones. Each item's geometry is read from the scene generator (edge/world), as the answers are.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

SEED = 1000  # cobra-edge eval's held-out seed: these are the items its motion row counts


def split_rows(model, tokenizer, items: int, seed: int = SEED) -> list[dict]:
    """-> one row per held-out motion item: its answer, what the reference said, its frames, the named shape's
    speed, and whether its centre cell changed between the last two frames / since the first."""
    from edge.world import FAMILIES, make_item, spec
    from edge.world.dense import centre_cell
    from export.reference import ReferenceStream

    stream = ReferenceStream(model, tokenizer, mode="continuous")
    rows = []
    for i in range(items):
        item = make_item("motion", (seed, FAMILIES.index("motion"), i))
        stream.reset()
        for frame, q in zip(item.frames(), item.questions):
            said = tokenizer.decode(stream.ask(frame, q.prompt, 4)).strip()
        kind = next(w for w in item.question.prompt.rstrip("?").split() if w in spec.SHAPES)
        first, before, last = (next(s for s in item.scenes[k].shapes if s.kind == kind) for k in (0, -2, -1))
        cell = {k: centre_cell(s, 4)[0] for k, s in (("first", first), ("before", before), ("last", last))}
        rows.append({"answer": item.question.answer, "said": said, "frames": len(item.scenes),
                     "speed": last.speed, "cell_changed_last": cell["before"] != cell["last"],
                     "cell_changed_any": cell["first"] != cell["last"]})
    return rows


def summarise(rows: list[dict]) -> dict:
    """-> accuracy (share and count) per bucket: all, still, each frame count, and the moving items by cell change;
    and what was said to moving items that stayed in one cell."""
    def acc(sel):
        sel = list(sel)
        return {"accuracy": sum(r["answer"] == r["said"] for r in sel) / len(sel) if sel else None, "items": len(sel)}

    moving = [r for r in rows if r["answer"] != "still"]
    out = {"all": acc(rows), "still": acc(r for r in rows if r["answer"] == "still")}
    for n in sorted({r["frames"] for r in rows}):
        out[f"frames {n}"] = acc(r for r in rows if r["frames"] == n)
    out["moving, cell changed between the last two frames"] = acc(r for r in moving if r["cell_changed_last"])
    out["moving, same cell in the last two, changed since the first"] = acc(
        r for r in moving if not r["cell_changed_last"] and r["cell_changed_any"])
    out["moving, same cell in every frame"] = acc(r for r in moving if not r["cell_changed_any"])
    out["said to moving items within one cell"] = dict(Counter(r["said"] for r in moving if not r["cell_changed_any"]))
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.motion_split", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--weights", default=None, help="a checkpoint of cobra-edge train (default: the embedded model)")
    p.add_argument("--items", type=int, default=300, help="held-out motion items (the first of eval's 500)")
    p.add_argument("--name", default="", help="a label for the result file")
    p.add_argument("--out", default=None, help="results folder (default bench/results)")
    a = p.parse_args(argv)
    import os

    import torch

    from export.tokenizer import prompt_tokenizer
    from export.weights import EMBEDDED, load_trained, sha256

    from .timing import RESULTS_DIR, write_result

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    weights = Path(a.weights) if a.weights else EMBEDDED
    model, tokenizer_json, _ = load_trained(weights)
    rows = split_rows(model, prompt_tokenizer(tokenizer_json, model.cfg), a.items)
    summary = summarise(rows)
    for k, v in summary.items():
        print(f"{k}: " + (f"{100 * v['accuracy']:.1f} % of {v['items']}" if "items" in v and v["accuracy"] is not None
                          else str(v)))
    doc = {"what": __doc__.split("\n\n")[0], "weights": {"file": weights.name, "sha256": sha256(weights)},
           "seed": SEED, "items": a.items, "mode": "continuous", "reference": "PyTorch, greedy",
           "summary": summary, "rows": rows, "load_average": list(os.getloadavg())}
    write_result(a.out or RESULTS_DIR, "motion-split" + (f"-{a.name}" if a.name else ""), doc)
    return doc


if __name__ == "__main__":
    main()
