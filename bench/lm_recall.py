"""Is the language model's recall over the image tokens what limits the trained model? (issue 17's diagnostic;
docs/training.md, "Stage 1 of the curriculum")

    python -m bench.lm_recall --tokens oracle [--steps 300] [--weights W] [--out bench/results]

A fresh LM (export/train.py's init_for_training) is trained on the still-scene questions for --steps steps with
the embedded recipe's loss and batches (step_loss; 32 scenes x 6 questions, AdamW lr 2e-3, cosine), its visual
tokens given by one of:
    vision   the frozen encoders and projector of a trained checkpoint (--weights; default: the embedded model)
    oracle   the scene's exact cell labels (edge/world/dense.py: for each of the 4 x 4 cells and each (colour, kind)
             pair, visible there, centred there, where in the cell) through a small MLP trained with the LM: every
             binding of colour to kind and place is handed to the LM exactly
Held-out (cobra-edge eval's seed, --per items of each single-frame family): the first answer token's accuracy per
family, and the colour family's answers by the number of shapes in the scene (right, another shape's colour, a
colour that is not in the scene). An LM that learns no faster from exact labels than from the encoders says that
its recall over the tokens, not the vision, is what limits the answers.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from .timing import RESULTS_DIR, machine_info

GRID = 4  # tiny-ldp-96's 4 x 4 visual tokens


def cell_features(labels: list) -> torch.Tensor:
    """n edge/world/dense.py cell_labels (present, centre, offset) -> [n, 16, 21 * 4] float32: each cell's exact
    labels side by side (present, centre, offset x and y per pair)."""
    return torch.from_numpy(np.stack([np.concatenate([p, c, o.reshape(len(p), -1)], axis=1) for p, c, o in labels]))


@torch.no_grad()
def held_out(model, tokenizer, oracle, per: int) -> dict:
    """First-token accuracy per single-frame family on cobra-edge eval's held-out items, and the colour family's
    answers by the number of shapes."""
    from edge.preprocess import preprocess
    from edge.world import SINGLE_FRAME, eval_items
    from export.evaluate import EVAL_SEED
    from export.train_scan import TRAIN_SCAN

    torch.set_flush_denormal(True)  # the scan's decays underflow to denormals, ~100x slower on x86
    llm = model.llm
    items = eval_items(EVAL_SEED, per, SINGLE_FRAME)
    scenes = [it.scenes[-1] for it in items]
    if oracle is not None:
        from edge.world.dense import cell_labels

        vis = oracle(cell_features([cell_labels(scene, GRID) for scene in scenes]))
    else:
        vis = model.visual_embeds(torch.from_numpy(np.stack([preprocess(it.frames()[-1], model.cfg.image_size)
                                                             for it in items])))
    _, conv, ssm = llm.forward_embeds(vis, *llm.empty_state(len(items)), scan=TRAIN_SCAN, last_only=True)
    right: dict[str, list[bool]] = {f: [] for f in SINGLE_FRAME}
    colour: dict[int, dict[str, int]] = {}
    for i, (it, scene) in enumerate(zip(items, scenes)):
        ids = torch.from_numpy(tokenizer.encode_prompt(it.question.prompt)[None])
        logits, _, _ = llm.forward_embeds(llm.embed(ids), conv[i:i + 1], ssm[i:i + 1], scan=TRAIN_SCAN, last_only=True)
        said = int(logits[0, -1].argmax())
        ok = said == int(tokenizer.encode_text(it.question.answer)[0])
        right[it.family].append(ok)
        if it.family == "colour":
            said_text = tokenizer.decode([said]).strip()
            kind = "right" if ok else ("another shape's colour" if said_text in {s.colour for s in scene.shapes}
                                       else "a colour not in the scene")
            by = colour.setdefault(len(scene.shapes), {})
            by[kind] = by.get(kind, 0) + 1
    return {"accuracy": {f: float(np.mean(v)) for f, v in right.items()},
            "colour_by_shapes": {str(k): colour[k] for k in sorted(colour)}}


def run(tokens: str, steps: int, weights: str | None, per: int, seed: int, eval_every: int,
        say=print) -> dict:
    from export.config import preset
    from export.model import build_random
    from export.train import TrainOptions, _lr, init_for_training
    from export.train_loss import step_loss
    from export.tokenizer import prompt_tokenizer
    from export.train_data import DataRecipe, draw_batch
    from export.weights import EMBEDDED, load_trained

    torch.manual_seed(seed)
    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    trained, tokenizer_json, _ = load_trained(weights or EMBEDDED)
    tokenizer = prompt_tokenizer(tokenizer_json, trained.cfg, cache_size=512)
    cfg = preset("tiny-ldp-96")
    model = init_for_training(build_random(cfg, seed=seed))
    oracle = None
    if tokens == "vision":  # the trained encoders and projector, frozen
        model.vision.load_state_dict(trained.vision.state_dict())
        model.projector.load_state_dict(trained.projector.state_dict())
    else:
        d = cfg.lm.d_model
        oracle = torch.nn.Sequential(torch.nn.Linear(4 * 21, d), torch.nn.GELU(), torch.nn.Linear(d, d))
        sample = draw_batch(DataRecipe(scenes=32, questions=1, sequences=0, dense_grid=GRID), seed, -1, motion=False)
        with torch.no_grad():  # centred as the encoders' tokens are (export/train.py center_visual_tokens)
            oracle[-1].bias.sub_(oracle(cell_features(sample.dense)).flatten(0, 1).mean(0))
    model.vision.requires_grad_(False)
    model.projector.requires_grad_(False)
    params = list(model.llm.parameters()) + (list(oracle.parameters()) if oracle is not None else [])
    opts = TrainOptions(steps=steps, warmup=50, workers=False)
    optim = torch.optim.AdamW(params, lr=opts.lr, betas=(0.9, 0.98), weight_decay=opts.weight_decay)
    recipe = DataRecipe(scenes=32, questions=6, sequences=0, dense_grid=GRID if oracle is not None else 0)
    curve, t0 = [], time.perf_counter()
    for step in range(steps):
        for g in optim.param_groups:
            g["lr"] = _lr(opts, step)
        batch = draw_batch(recipe, seed, step, motion=False)
        given = oracle(cell_features(batch.dense)) if oracle is not None else None
        loss, _ = step_loss(model, tokenizer, batch, 1.0, tokens=given)
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, opts.clip)
        optim.step()
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            model.eval()
            got = held_out(model, tokenizer, oracle, per)
            model.train()
            curve.append({"step": step + 1, "loss": float(loss.detach()), **got,
                          "minutes": round((time.perf_counter() - t0) / 60, 2)})
            say(f"{tokens} step {step + 1}: loss {float(loss.detach()):.3f}, first-token held-out "
                + ", ".join(f"{f} {100 * a:.1f}" for f, a in got["accuracy"].items())
                + f"; colour by shapes {got['colour_by_shapes']}")
    return {"tokens": tokens, "steps": steps, "seed": seed, "per_family": per, "weights": str(weights or EMBEDDED),
            "minutes": round((time.perf_counter() - t0) / 60, 2), "curve": curve, "final": curve[-1]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", choices=("vision", "oracle"), required=True)
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--weights", help="trained checkpoint whose encoders the vision arm uses (and the tokenizer)")
    p.add_argument("--per", type=int, default=200, help="held-out items per single-frame family (seed 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--out", default=str(RESULTS_DIR), help="where the JSON goes")
    a = p.parse_args(argv)
    doc = {"format": "cobra-edge-lm-recall/1", "machine": machine_info(1),
           **run(a.tokens, a.steps, a.weights, a.per, a.seed, a.eval_every)}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"lm-recall-{a.tokens}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(doc, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
