"""One training step of the embedded model's recipe, the selective scan's recurrence as a Python loop of autograd
ops (export/scan.py scan_train) against the fused kernel (export/train_scan.py), side by side in turns on the same
batch; writes bench/results/train-step-<date>.json.

    python -m bench.train_step [--weights W.safetensors] [--rounds 5] [--threads 1]

The batch is stage 3's of the curriculum (32 still scenes x 6 questions + 16 motion items, dense labels): what
`cobra-edge train` computes each step. Both contenders' losses and gradients are compared in the same run.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.train_step", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--weights", default=None, help="a checkpoint of cobra-edge train (default: the embedded model)")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads (training uses 1)")
    p.add_argument("--out", default=None, help="results folder (default bench/results)")
    a = p.parse_args(argv)

    import torch

    from export.train_data import DataRecipe, draw_batch
    from export.train_dense import DenseHead, dense_grid
    from export.train_loss import step_loss
    from export.train_scan import ENV, _library
    from export.tokenizer import prompt_tokenizer
    from export.weights import EMBEDDED, load_trained

    from .timing import RESULTS_DIR, machine_info, side_by_side, write_result

    if _library() is None:
        raise SystemExit("the kernel library with the training recurrence is not built here (pip install -e .)")
    torch.set_num_threads(a.threads)
    torch.set_flush_denormal(True)
    weights = Path(a.weights) if a.weights else EMBEDDED
    model, tokenizer_json, _ = load_trained(weights)
    model.train()
    tok = prompt_tokenizer(tokenizer_json, model.cfg, cache_size=512)
    recipe = DataRecipe(scenes=32, questions=6, sequences=16, image_size=model.cfg.image_size,
                        dense_grid=dense_grid(model))
    batch = draw_batch(recipe, 0, 100_000)
    dense = DenseHead(model.cfg.lm.d_model)
    params = list(model.parameters()) + list(dense.parameters())
    results: dict[str, tuple] = {}

    def step(name: str, mode: str):
        def run():
            os.environ[ENV] = mode
            loss, _ = step_loss(model, tok, batch, 2.0, dense, 1.0, 0.0, 1.0)
            results[name] = (float(loss.detach()), torch.autograd.grad(loss, params, allow_unused=True))
        return run

    load_before = [round(v, 2) for v in os.getloadavg()]
    times = side_by_side({"python_loop": step("python_loop", "torch"), "fused": step("fused", "fused")}, repeats=a.rounds, warmup=1)
    os.environ.pop(ENV, None)
    worst = max(float((g_f - g_t).abs().max() / max(1e-3, float(g_t.abs().max())))
                for g_f, g_t in zip(results["fused"][1], results["python_loop"][1]) if g_t is not None)
    doc = {
        "what": "one training step (forward + backward of step_loss) of stage 3's batch: 32 still scenes x 6 "
                "questions + 16 motion items, dense and early-answer terms; the recurrence as scan_train's Python "
                "loop against the fused kernel (engines/kernels/scan_grad.h), in turns on the same batch",
        "weights": weights.name, "rounds": a.rounds, "threads": a.threads,
        "times": times,
        "speedup_median": times["python_loop"]["median_ms"] / times["fused"]["median_ms"],
        "loss": {k: v[0] for k, v in results.items()},
        "worst_relative_gradient_difference": worst,
        "load_average_before": load_before, "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "machine": machine_info(a.threads),
    }
    print(f"python loop {times['python_loop']['median_ms']:.0f} ms, fused {times['fused']['median_ms']:.0f} ms "
          f"(x{doc['speedup_median']:.2f}); gradients within {worst:.1e}; load {load_before}")
    write_result(a.out or RESULTS_DIR, "train-step", doc)
    return doc


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
