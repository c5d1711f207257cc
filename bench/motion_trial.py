"""Can the trained model's state learn which way a shape moves? (issue 17's motion family; docs/training.md)

    python -m bench.motion_trial --weights W [--frames 2 2] [--speed 0.2 0.3] [--steps 300] [--items 24]
                                 [--scenes 0] [--out bench/results]

Continues a checkpoint of cobra-edge train (--weights) on motion items alone (or with --scenes still scenes
beside them), their frames and speeds given by --frames and --speed (a curriculum's easy end: two frames, moves of
a quarter of the view), with export/train.py's loss (answers, the motion labels at the later frames' tokens).
Then the motion question's accuracy on held-out items (validation seed), through the PyTorch reference, in
continuous mode (the state carries the earlier frames) and reset mode (it does not: chance, 20 %), on the trial's
own distribution and on the world's (2 to 4 frames, 0.05 to 0.09 per frame: what cobra-edge eval asks).
A trial whose continuous accuracy stays at the reset one has not taught the state to carry positions.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .timing import RESULTS_DIR, machine_info, write_result

VALIDATION_SEED = 999  # export/train.py's validation seed: never a training batch, never cobra-edge eval's


def motion_accuracy(model, tokenizer, per: int, motion=None, mode: str = "continuous") -> float:
    """Share of ``per`` held-out motion items (``motion``: an edge.world.MotionRange, None: the world's) answered
    right by the reference in ``mode``."""
    from edge.world import FAMILIES, make_item
    from export.reference import ReferenceStream

    stream = ReferenceStream(model, tokenizer, mode=mode)
    right = 0
    for i in range(per):
        item = make_item("motion", (VALIDATION_SEED, FAMILIES.index("motion"), i), motion)
        right += answer_item(stream, tokenizer, item) == item.question.answer
    return right / per


def answer_item(stream, tokenizer, item) -> str:
    """What a reference stream (reset first) answers to an item's last question, each earlier frame asked its own."""
    stream.reset()
    for frame, q in zip(item.frames(), item.questions):
        text = tokenizer.decode(stream.ask(frame, q.prompt, 4))
    return text.strip()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", required=True, help="a checkpoint of cobra-edge train (its .json record beside it)")
    ap.add_argument("--frames", type=int, nargs=2, default=(2, 2), metavar=("LOW", "HIGH"))
    ap.add_argument("--speed", type=float, nargs=2, default=(0.2, 0.3), metavar=("LOW", "HIGH"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--items", type=int, default=24, help="motion items per step")
    ap.add_argument("--scenes", type=int, default=0, help="still scenes (6 questions each) per step beside them")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--dense-weight", type=float, default=1.0)
    ap.add_argument("--motion-weight", type=float, default=2.0)
    ap.add_argument("--motion-summary-weight", type=float, default=0.0,
                    help="weight of every pair's move read at a later frame's last visual token (0: off)")
    ap.add_argument("--recall-weight", type=float, default=0.0,
                    help="weight of recalling the frame before's cell labels (export/train_loss.py; 0: off)")
    ap.add_argument("--early-answer-weight", type=float, default=0.0)
    ap.add_argument("--keep-dense-head", action="store_true",
                    help="continue the checkpoint's dense head (W.dense.safetensors) instead of a fresh one")
    ap.add_argument("--per", type=int, default=100, help="held-out items per measurement")
    ap.add_argument("--validate-per", type=int, default=20,
                    help="items per family of the training's own final validation (all six families)")
    ap.add_argument("--name", default="", help="a label for the result file")
    ap.add_argument("--out", default=str(RESULTS_DIR))
    args = ap.parse_args(argv)

    import torch

    from edge.world import MotionRange
    from export.tokenizer import prompt_tokenizer
    from export.train import TrainOptions, train
    from export.train_data import DataRecipe

    out = Path(args.out)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    trial = MotionRange(tuple(args.frames), tuple(args.speed))
    opts = TrainOptions(init_weights=args.weights, steps=args.steps, lr=args.lr, warmup=min(50, args.steps // 4),
                        motion_from=0, dense_weight=args.dense_weight, motion_weight=args.motion_weight,
                        recall_weight=args.recall_weight, motion_summary_weight=args.motion_summary_weight,
                        early_answer_weight=args.early_answer_weight, keep_dense_head=args.keep_dense_head,
                        eval_every=10**9, eval_per_family=args.validate_per, log_every=max(1, args.steps // 20),
                        recipe=DataRecipe(scenes=args.scenes, sequences=args.items, motion_frames=trial.frames,
                                          motion_speed=trial.speed))
    t0 = time.perf_counter()
    from edge.embedded import default_cache_dir

    weights_out = default_cache_dir() / "runs" / f"motion-trial-{stamp}.safetensors"  # outside the repository
    result = train(opts, weights_out, say=lambda m: print(m, flush=True), plot=False)
    minutes = (time.perf_counter() - t0) / 60
    tokenizer = prompt_tokenizer(result.tokenizer_json, result.model.cfg)
    torch.set_flush_denormal(True)
    accuracy = {}
    for name, motion in (("trial", trial), ("world", None)):
        for mode in ("continuous", "reset"):
            accuracy[f"{name}/{mode}"] = motion_accuracy(result.model, tokenizer, args.per, motion, mode)
            print(f"{name} distribution, {mode}: {accuracy[f'{name}/{mode}']:.1%}", flush=True)
    doc = {"what": "motion-only continuation of a trained checkpoint: held-out motion accuracy (reference, greedy)",
           "weights": result.record["initialised_from"],
           "trained_weights": str(weights_out), "args": vars(args), "minutes": round(minutes, 2),
           "curve": result.record["curve"], "accuracy": accuracy, "machine": machine_info(1), "date": stamp}
    write_result(out, f"motion-trial{'-' + args.name if args.name else ''}", doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
