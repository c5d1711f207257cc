"""Grow a trained checkpoint's SSM state (d_state) without changing what it computes, to try a wider state without
training from scratch (issue 17's motion family; docs/training.md, "Where motion fails").

    python -m bench.grow_state IN.safetensors OUT.safetensors --d-state 64

Per layer: the new state dimensions' C rows of x_proj are zero, so they add nothing to any output; their B rows
are small and random (0.5 x the old B rows' spread), so that C has a gradient to grow from; their A is the S4D-real
init (A_n = n, as a fresh model's). Everything else is copied. The grown checkpoint's record is the old one with
``grown`` naming the parent and both widths; continue it with ``cobra-edge train --init-weights OUT``.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path


def grow(model, d_state: int, seed: int = 0):
    """A CobraModel -> a new one with ``d_state`` state dimensions per channel (>= the old), same outputs."""
    import torch

    from export.model import CobraModel

    cfg, n, r = model.cfg, model.cfg.lm.d_state, model.cfg.lm.dt_rank
    if d_state < n:
        raise ValueError(f"--d-state {d_state}: the model has {n} already; growing only")
    big = CobraModel(replace(cfg, lm=replace(cfg.lm, d_state=d_state)))
    old, new = model.state_dict(), big.state_dict()
    g = torch.Generator().manual_seed(seed)
    for k, v in new.items():
        o = old[k]
        if o.shape == v.shape:
            new[k] = o.clone()
        elif k.endswith("x_proj.weight"):  # rows: dt (r), B (n), C (n)
            w = torch.zeros_like(v)
            w[:r + n] = o[:r + n]
            w[r + n:r + d_state] = torch.randn(d_state - n, o.shape[1], generator=g) * 0.5 * o[r:r + n].std()
            w[r + d_state:r + d_state + n] = o[r + n:]
            new[k] = w
        elif k.endswith("A_log"):  # [d_inner, d_state]: the fresh model's log(1..d_state), the old columns kept
            new[k] = torch.cat([o, v[:, n:]], dim=1)
        else:
            raise ValueError(f"{k}: {tuple(o.shape)} -> {tuple(v.shape)}: not a tensor that d_state shapes")
    big.load_state_dict(new)
    return big.eval()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.grow_state", description=__doc__.split("\n\n")[0])
    p.add_argument("weights", help="a checkpoint of cobra-edge train (its .json record beside it)")
    p.add_argument("out", help="the grown checkpoint to write (.safetensors; its record beside it)")
    p.add_argument("--d-state", type=int, required=True, help="state dimensions per channel (at most 64: the kernels')")
    a = p.parse_args(argv)
    from export.weights import load_trained, save_trained

    model, tokenizer_json, record = load_trained(a.weights)
    big = grow(model, a.d_state)
    rec = {**record, "grown": {"from": Path(a.weights).name, "d_state": [model.cfg.lm.d_state, a.d_state]}}
    print(f"wrote {save_trained(big, a.out, tokenizer_json, rec)}: d_state {model.cfg.lm.d_state} -> {a.d_state}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
