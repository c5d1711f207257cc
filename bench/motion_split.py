"""Where the motion family is answered and where not: held-out motion items (cobra-edge eval's seed), answered by
the PyTorch reference in continuous mode, split by the item's number of frames and by whether the named shape's
centre left its 4 x 4 token cell; writes bench/results/motion-split-<name>-<date>.json.

    python -m bench.motion_split --weights W [--items 300] [--travel-per 200] [--name stage8]

Why: the family's accuracy alone (about 53 %) does not say what the state fails to carry. If the answers were read
off which token a shape sits in, items whose shape changed cells would be answered and the others not; if the
state compared positions finely but forgot, two-frame items (the frame before is the most recent) would be the
easy ones. Each item's geometry is read from the scene generator (edge/world), as the answers are.

Two more measurements: accuracy on items of fixed frames and speed (TRAVEL: the same distance from the first frame
to the last, reached in two frames or in four), and, where the checkpoint's dense head is saved beside it
(W.dense.safetensors), how precisely its visual tokens place a shape's centre (offset_error).
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

    from .motion_trial import answer_item

    stream = ReferenceStream(model, tokenizer, mode="continuous")
    rows = []
    for i in range(items):
        item = make_item("motion", (seed, FAMILIES.index("motion"), i))
        said = answer_item(stream, tokenizer, item)
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


# (frames, speed per frame): the world's frames at its speed, and the same total travel reached other ways
TRAVEL = (((2, 2), (0.05, 0.09)), ((3, 3), (0.05, 0.09)), ((4, 4), (0.05, 0.09)), ((2, 2), (0.15, 0.27)),
          ((3, 3), (0.10, 0.135)))


def by_travel(model, tokenizer, per: int) -> list[dict]:
    """Motion accuracy (continuous, validation seed) on items of fixed frames and speed (TRAVEL): does accuracy
    follow the number of frames, or the distance travelled from the first frame to the last?"""
    from edge.world import MotionRange

    from .motion_trial import motion_accuracy

    out = []
    for frames, speed in TRAVEL:
        travel = [(frames[0] - 1) * speed[0], (frames[0] - 1) * speed[1]]
        out.append({"frames": frames[0], "speed": list(speed), "travel": [round(t, 3) for t in travel],
                    "accuracy": motion_accuracy(model, tokenizer, per, MotionRange(frames, speed)), "items": per})
    return out


def offset_error(model, dense_path: Path, scenes: int = 300) -> dict:
    """How precisely the visual tokens place a shape: the checkpoint's dense head (train's W.dense.safetensors)
    reads each centre's (x, y) within its cell off the cell's token; -> the error per axis in widths of the view
    (median, mean, 90th percentile) on held-out still scenes (dense_metrics' seed)."""
    import numpy as np
    import torch

    from export.train_dense import DenseHead, dense_grid, held_out_read, load_dense_head

    grid = dense_grid(model)
    head = DenseHead(model.cfg.lm.d_model)
    load_dense_head(head, dense_path)
    batch, out = held_out_read(model, head, grid, 998, scenes)
    p = head.pairs
    xy = torch.sigmoid(out[..., 2 * p:].unflatten(-1, (p, 2))).numpy()
    errs = np.concatenate([np.abs(xy[i][np.nonzero(centre)] - offset[np.nonzero(centre)]).ravel()
                           for i, (_, centre, offset) in enumerate(batch.dense)]) / grid
    return {"scenes": scenes, "median": float(np.median(errs)), "mean": float(errs.mean()),
            "p90": float(np.quantile(errs, 0.9)), "unit": "widths of the view, per axis"}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.motion_split", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--weights", default=None, help="a checkpoint of cobra-edge train (default: the embedded model)")
    p.add_argument("--items", type=int, default=300, help="held-out motion items (the first of eval's 500)")
    p.add_argument("--travel-per", type=int, default=200,
                   help="items per row of the travel table (validation seed; 0: skip it)")
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
    tok = prompt_tokenizer(tokenizer_json, model.cfg)
    travel = by_travel(model, tok, a.travel_per) if a.travel_per else []
    from export.train import dense_head_path

    offsets = offset_error(model, dense_head_path(weights)) if dense_head_path(weights).exists() else None
    for k, v in summary.items():
        print(f"{k}: " + (f"{100 * v['accuracy']:.1f} % of {v['items']}" if "items" in v and v["accuracy"] is not None
                          else str(v)))
    for t in travel:
        print(f"{t['frames']} frames at {t['speed'][0]} to {t['speed'][1]} (travel {t['travel'][0]} to "
              f"{t['travel'][1]}): {100 * t['accuracy']:.1f} % of {t['items']}")
    if offsets:
        print(f"visual tokens place a centre within {offsets['median']:.4f} of the view (median; p90 "
              f"{offsets['p90']:.4f})")
    doc = {"what": __doc__.split("\n\n")[0], "weights": {"file": weights.name, "sha256": sha256(weights)},
           "seed": SEED, "items": a.items, "mode": "continuous", "reference": "PyTorch, greedy",
           "summary": summary, "by_travel": travel, "offset_error": offsets, "rows": rows,
           "load_average": list(os.getloadavg())}
    write_result(a.out or RESULTS_DIR, "motion-split" + (f"-{a.name}" if a.name else ""), doc)
    return doc


if __name__ == "__main__":
    main()
