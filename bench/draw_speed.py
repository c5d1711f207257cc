"""How long the training data worker takes to draw one step's batch (export/train_data.py draw_batch), this tree
against another checkout of the project (--baseline), in turns in one run; writes bench/results/draw-speed-<date>.json.

    python -m bench.draw_speed [--baseline /path/to/old/checkout] [--rounds 5] [--steps 4]

Why it matters: the worker draws on its own core while the trainer computes on the other (1 torch thread), so a
step takes the longer of the two. The trainer's step is about 1.2 s (bench/results/train-step-*); a batch whose
motion items need many tries to lay out (larger moves than the world's) took longer than that, and then training
waited on the drawing. Recipes timed: the vision pretraining's 64 still scenes, the curriculum's mixed stages (16
motion items of the world's range) and the same with moves of 0.07 to 0.13. Each contender is a child process that draws the same steps of the same seed;
both print a digest of what they drew, and the two must be equal (same batches, only faster).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

RECIPES = {  # name -> DataRecipe fields (the mixed stages' step: 32 still scenes x 6 questions, 16 motion items;
    # the vision pretraining's draw: 64 still scenes with their cell labels, which serves 3 steps)
    "pretraining": {"scenes": 64, "questions": 1, "sequences": 0, "dense_grid": 4},
    "mixed": {"scenes": 32, "questions": 6, "sequences": 16, "dense_grid": 4},
    "wider-moves": {"scenes": 32, "questions": 6, "sequences": 16, "dense_grid": 4, "motion_speed": (0.07, 0.13)},
}


def child(recipe: str, steps: int, first: int) -> dict:
    """Draw ``steps`` batches of ``recipe`` from step ``first``: -> seconds per batch, a digest of the batches."""
    import time

    import cv2

    from export.train_data import DataRecipe, draw_batch

    cv2.setNumThreads(1)
    r = DataRecipe(**RECIPES[recipe])
    h, times = hashlib.sha256(), []
    for step in range(first, first + steps):
        t = time.perf_counter()
        b = draw_batch(r, 0, step)
        times.append(time.perf_counter() - t)
        h.update(b.pixels.tobytes())
        h.update(repr((b.qa, b.seq_qa)).encode())
        for p in b.seq_pixels:
            h.update(p.tobytes())
    import export.train_data

    return {"seconds": times, "digest": h.hexdigest(), "code": export.train_data.__file__}


def _run(root: Path, recipe: str, steps: int, first: int) -> dict:
    """``child`` in a new process whose edge/ and export/ are ``root``'s (this file is loaded by its path, so the
    other checkout needs no copy of it)."""
    code = ("import importlib.util, json, sys; sys.path.insert(0, sys.argv[1]); "
            "spec = importlib.util.spec_from_file_location('draw_speed_child', sys.argv[5]); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
            "print(json.dumps(m.child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))))")
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", code, str(root), recipe, str(steps), str(first), __file__], cwd=root,
                         env=env, capture_output=True, text=True, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if not Path(got["code"]).resolve().is_relative_to(root):
        raise RuntimeError(f"the contender for {root} ran {got['code']} (an installed copy shadows that checkout)")
    return got


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m bench.draw_speed", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--baseline", default=None, help="another checkout's root (only its edge/ and export/ are "
                   "used; nothing is written there); none: this tree alone")
    p.add_argument("--rounds", type=int, default=5, help="turns per contender")
    p.add_argument("--steps", type=int, default=4, help="batches drawn per turn")
    p.add_argument("--out", default=None, help="results folder (default bench/results)")
    a = p.parse_args(argv)
    from statistics import median

    from .timing import RESULTS_DIR, write_result

    here = Path(__file__).resolve().parents[1]
    contenders = {"this tree": here}
    if a.baseline:
        contenders["baseline"] = Path(a.baseline).resolve()
    load_before = os.getloadavg()
    doc: dict = {"what": __doc__.split("\n\n")[0], "rounds": a.rounds, "steps_per_turn": a.steps, "recipes": {}}
    for recipe in RECIPES:
        runs: dict[str, list[float]] = {k: [] for k in contenders}
        digests: dict[str, set] = {k: set() for k in contenders}
        for r in range(a.rounds):
            for name, root in contenders.items():
                got = _run(root, recipe, a.steps, first=1000 + r * a.steps)
                runs[name] += got["seconds"]
                digests[name].add((r, got["digest"]))
        row = {k: {"median_s": median(v), "min_s": min(v), "max_s": max(v)} for k, v in runs.items()}
        if a.baseline:
            row["same_batches"] = digests["this tree"] == digests["baseline"]
            row["speedup_median"] = row["baseline"]["median_s"] / row["this tree"]["median_s"]
        doc["recipes"][recipe] = {**RECIPES[recipe], **row}
        print(recipe, json.dumps(row))
    doc["load_average_before"], doc["load_average_after"] = list(load_before), list(os.getloadavg())
    doc["cores"] = os.cpu_count()
    write_result(a.out or RESULTS_DIR, "draw-speed", doc)
    return doc


if __name__ == "__main__":
    main()
