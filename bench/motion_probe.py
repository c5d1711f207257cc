"""Why motion fails: can a shape's move between two frames be read off the vision, and off the LM's state?
(issue 17's motion family; docs/training.md, "Where motion fails").

    python -m bench.motion_probe [--weights W] [--train 1200] [--test 400] [--out bench/results]

Motion items of the world's range (2 to 4 frames, training seeds (0, motion, i); held-out (1000, motion, i), as
cobra-edge eval's), run through the frozen trained model as training runs them (per frame: image, question,
answer; continuous). For every shape at every later frame k, the way it moved since frame k - 1 (left / right /
up / down / still) is probed (bench/probe.py's MLP) from:
    exact    the shape's true centres at k - 1 and k and the move between them (a control: the probe's own reach
             on the labels; no input dropout, as there are only six inputs)
    vision   the visual tokens at the shape's centre cell in frame k - 1 and in frame k, and the two cells
             one-hot: what two frames' vision alone holds [2 d_model + 2 cells]
    lm       the LM's final hidden state at frame k's visual token of the shape's centre cell: what the state
             carried from frame k - 1 to where the move must be read (training's motion labels read it there)
A ``vision`` probe far above ``lm`` says the encoders see the move and the state does not carry the frame before
to where it is compared. Written as ``motion-probe-<date>.json``, split by the item's frames.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from .probe import fit_and_score
from .timing import RESULTS_DIR, machine_info, write_result

FEATURES = ("exact", "vision", "lm")


@torch.no_grad()
def motion_features(model, tokenizer, items) -> tuple[dict[str, torch.Tensor], np.ndarray, np.ndarray]:
    """items (motion Items) -> ({feature: [m, width]}, labels int64 [m] (spec.MOTIONS index), frames int [m]): one
    row per shape per later frame."""
    from edge.preprocess import preprocess
    from edge.world import spec
    from edge.world.dense import centre_cell
    from export.train_loss import _encode
    from export.train_scan import TRAIN_SCAN

    llm = model.llm
    grid = int(round(model.cfg.num_visual_tokens ** 0.5))
    if model.cfg.object_tokens or grid * grid != model.cfg.num_visual_tokens:
        raise ValueError(f"{model.cfg.name}: visual tokens are not a square grid of cells; this probe reads cells")
    cells = grid * grid
    out: dict[str, list] = {f: [] for f in FEATURES}
    labels, frames = [], []
    for it in items:
        pixels = torch.from_numpy(np.stack([preprocess(f, model.cfg.image_size) for f in it.frames()]))
        vis = model.visual_embeds(pixels)  # [frames, T, d]
        parts, starts, pos = [], [], 0
        for k, q in enumerate(it.questions):
            p, a = _encode(tokenizer, q.prompt, q.answer)
            parts += [vis[k], llm.embed(torch.tensor(p + a[:-1])[None])[0]]
            starts.append(pos)
            pos += vis.shape[1] + len(p) + len(a) - 1
        resid, _, _ = llm.residual(torch.cat(parts)[None], *llm.empty_state(1), scan=TRAIN_SCAN)
        hidden = llm.backbone.norm_f(resid)[0]
        for k in range(1, len(it.scenes)):
            for before, now in zip(it.scenes[k - 1].shapes, it.scenes[k].shapes, strict=True):
                c0, c1 = centre_cell(before, grid)[0], centre_cell(now, grid)[0]
                where = torch.zeros(2 * cells)
                where[c0], where[cells + c1] = 1.0, 1.0
                out["exact"].append(torch.tensor([before.cx, before.cy, now.cx, now.cy, now.cx - before.cx,
                                                  now.cy - before.cy]))
                out["vision"].append(torch.cat([vis[k - 1, c0], vis[k, c1], where]))
                out["lm"].append(hidden[starts[k] + c1])
                labels.append(spec.MOTIONS.index(now.motion))
                frames.append(len(it.scenes))
    return {f: torch.stack(v).float() for f, v in out.items()}, np.array(labels), np.array(frames)


def run(n_train: int, n_test: int, weights: str | None, steps: int = 4000, say=print) -> dict:
    from edge.world import FAMILIES, make_item, spec
    from export.tokenizer import prompt_tokenizer
    from export.weights import EMBEDDED, load_trained

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model, tokenizer_json, _ = load_trained(weights or EMBEDDED)
    tokenizer = prompt_tokenizer(tokenizer_json, model.cfg)
    f = FAMILIES.index("motion")
    x_train, y_train, _ = motion_features(model, tokenizer, [make_item("motion", (0, f, i)) for i in range(n_train)])
    x_test, y_test, frames = motion_features(model, tokenizer,
                                             [make_item("motion", (1000, f, i)) for i in range(n_test)])
    say(f"motion probe: {len(y_train)} + {len(y_test)} shape moves from {n_train} + {n_test} items "
        f"in {time.perf_counter() - t0:.0f} s")
    doc = {"schema": "cobra-edge-motion-probe/1", "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "weights": str(weights or EMBEDDED), "d_state": model.cfg.lm.d_state, "train_items": n_train,
           "test_items": n_test, "train_moves": len(y_train), "test_moves": len(y_test), "steps": steps,
           "classes": list(spec.MOTIONS), "chance": float(np.bincount(y_test).max() / len(y_test)),
           "machine": machine_info(1), "probes": {}}
    for feature in FEATURES:
        mu, sd = x_train[feature].mean(0), x_train[feature].std(0) + 1e-5
        right, fitted = fit_and_score((x_train[feature] - mu) / sd, torch.from_numpy(y_train),
                                      (x_test[feature] - mu) / sd, torch.from_numpy(y_test), len(spec.MOTIONS), steps,
                                      dropout=0.0 if feature == "exact" else 0.2)
        by_frames = {str(n): float(right[frames == n].mean()) for n in sorted(set(frames.tolist()))}
        doc["probes"][feature] = {"features": int(x_train[feature].shape[1]), "held_out": float(right.mean()),
                                  "train": fitted, "held_out_by_frames": by_frames}
        say(f"motion probe on {feature:<6} ({x_train[feature].shape[1]} features): held-out {100 * right.mean():.1f} % "
            f"(by frames {', '.join(f'{k}: {100 * v:.1f}' for k, v in by_frames.items())}), train {100 * fitted:.1f} %")
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    return doc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.motion_probe", description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=int, default=1200, help="training motion items")
    p.add_argument("--test", type=int, default=400, help="held-out motion items (seed 1000, as cobra-edge eval)")
    p.add_argument("--steps", type=int, default=4000, help="probe training steps")
    p.add_argument("--weights", default=None, help="a trained checkpoint (default: the embedded model)")
    p.add_argument("--out", default=str(RESULTS_DIR), help="where the JSON goes")
    a = p.parse_args(argv)
    write_result(a.out, "motion-probe", run(a.train, a.test, a.weights, a.steps))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
