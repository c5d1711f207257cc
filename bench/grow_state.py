"""Grow a trained checkpoint's SSM state (d_state) or its LM's depth (n_layer) without changing what it computes, to
try a wider state or a deeper LM without training from scratch (issue 17's motion family; docs/training.md, "Where
motion fails").

    python -m bench.grow_state IN.safetensors OUT.safetensors --d-state 64
    python -m bench.grow_state IN.safetensors OUT.safetensors --layers 8

``--d-state``, per layer: the new state dimensions' C rows of x_proj are zero, so they add nothing to any output;
their B rows are small and random (0.5 x the old B rows' spread), so that C has a gradient to grow from; their A
is the S4D-real init (A_n = n, as a fresh model's). Everything else is copied.

``--layers``: the old layers keep their order, spread evenly, and a new Mamba block follows each (4 -> 8: old
layers at 0, 2, 4, 6). A new block has a fresh training init (cobra-edge train's) except its out_proj, which is
zero: the block adds nothing to the residual stream at first, and out_proj's gradient (its input is not zero)
lets it grow.

The grown checkpoint's record is the old one with ``grown`` naming the parent and both sizes; continue it with
``cobra-edge train --init-weights OUT``.
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


def grow_layers(model, n_layer: int, seed: int = 0):
    """A CobraModel -> a new one with ``n_layer`` Mamba blocks (>= the old), same outputs; -> (model, the old
    layers' new indices)."""
    import torch

    from export.model import build_random
    from export.train import init_for_training

    cfg, n = model.cfg, model.cfg.lm.n_layer
    if n_layer < n:
        raise ValueError(f"--layers {n_layer}: the model has {n} already; growing only")
    big = init_for_training(build_random(replace(cfg, lm=replace(cfg.lm, n_layer=n_layer)), seed=seed))
    placed = [i * n_layer // n for i in range(n)]  # where each old layer goes
    old, new = model.state_dict(), big.state_dict()
    prefix = "llm.backbone.layers."
    for k in new:
        if not k.startswith(prefix):
            new[k] = old[k].clone()
        elif int(k[len(prefix):].split(".")[0]) not in placed and k.endswith("mixer.out_proj.weight"):
            new[k] = torch.zeros_like(new[k])
    for i, j in enumerate(placed):
        for k, v in old.items():
            if k.startswith(f"{prefix}{i}."):
                new[f"{prefix}{j}.{k[len(prefix) + len(str(i)) + 1:]}"] = v.clone()
    big.load_state_dict(new)
    return big.eval(), placed


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.grow_state", description=__doc__.split("\n\n")[0])
    p.add_argument("weights", help="a checkpoint of cobra-edge train (its .json record beside it)")
    p.add_argument("out", help="the grown checkpoint to write (.safetensors; its record beside it)")
    p.add_argument("--d-state", type=int, help="state dimensions per channel (at most 64: the kernels')")
    p.add_argument("--layers", type=int, help="Mamba blocks in the LM (new ones interleaved after the old)")
    a = p.parse_args(argv)
    if a.d_state is None and a.layers is None:
        p.error("give --d-state, --layers or both")
    from export.weights import load_trained, save_trained

    model, tokenizer_json, record = load_trained(a.weights)
    lm, grown = model.cfg.lm, {"from": Path(a.weights).name}
    if a.d_state is not None:
        model = grow(model, a.d_state)
        grown["d_state"] = [lm.d_state, a.d_state]
    if a.layers is not None:
        model, _ = grow_layers(model, a.layers)
        grown["n_layer"] = [lm.n_layer, a.layers]
    path = save_trained(model, a.out, tokenizer_json, {**record, "grown": grown})
    print(f"wrote {path}: " + ", ".join(f"{k} {v[0]} -> {v[1]}" for k, v in grown.items() if k != "from"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
