"""What the GPU check (bench/gpu_check.py) compares the kernels against: the float64 references of the three
kernels' contracts, their inputs, and the shapes they are checked on (numpy only: the GPU machine needs no torch;
tests/bench/test_gpu_check.py holds the references to export/scan.py's and export/mamba.py's PyTorch ones).

    y, h_out = scan_reference(**scan_inputs(2, 7, 64, 16, seed=0))
    rel_err([y_gpu, h_gpu], [y, h_out]) <= TOL["float32"]
"""

from __future__ import annotations

import numpy as np

TOL = {"float32": 1e-4, "float16": 1e-2}  # relative to max(1, max |reference|): the targets

# (b, l, d, n): tests/engines/test_gpu_kernels.py's scan shapes (the CPU kernel's, test_kernels.py, among them)
SCAN_SHAPES = [(1, 1, 8, 16), (2, 7, 64, 16), (3, 33, 100, 16), (2, 64, 1536, 16), (1, 64, 130, 5), (1, 9, 72, 64),
               (1, 12, 3, 16), (2, 761, 100, 16), (2, 20, 1536, 16)]
# (b, l, d, k): test_gpu_kernels.py's conv shapes, and the CPU CausalConv tests' (b, l) at d 100, d_conv 4
CONV_SHAPES = ([(2, l, d, k) for l in (0, 1, 2, 3, 4, 7, 19, 64, 761)
                for d, k in ((100, 4), (3, 4), (130, 3), (72, 2), (64, 1), (40, 9))]
               + [(1, 1, 100, 4), (3, 37, 100, 4), (2, 200, 100, 4)])
MAMBA_2_8B = {"d_inner": 5120, "d_state": 16, "d_conv": 4, "n_layer": 64, "tokens": 761}


def _silu(v):
    return v / (1.0 + np.exp(-v))


def scan_reference(x, dt, A, B, C, D, z, dt_bias, h):
    """mamba_ssm's selective_scan_fn with a state, in float64: (y [b, l, d], h_out [b, d, n])."""
    x, dt, A, B, C, D, z, dt_bias, h = (np.asarray(a, np.float64) for a in (x, dt, A, B, C, D, z, dt_bias, h))
    v = dt + dt_bias
    delta = np.maximum(v, 0) + np.log1p(np.exp(-np.abs(v)))  # softplus
    y = np.empty_like(x)
    for t in range(x.shape[1]):
        h = np.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * x[:, t])[..., None] * B[:, t, None, :]
        y[:, t] = (h * C[:, t, None, :]).sum(-1) + D * x[:, t]
    return y * _silu(z), h


def conv_reference(x, conv_state, weight, bias):
    """mamba_ssm's causal_conv1d_fn (SiLU) with a state, token-major, in float64: (y [b, l, d], state_out)."""
    x, s, w, bias = (np.asarray(a, np.float64) for a in (x, conv_state, weight, bias))
    keep, l = w.shape[1] - 1, x.shape[1]
    full = np.concatenate([s, x.transpose(0, 2, 1)], axis=2)  # [b, d, keep + l]
    y = np.stack([(full[:, :, t:t + keep + 1] * w).sum(-1) for t in range(l)], axis=1) if l else np.zeros(x.shape)
    return _silu(y + bias), full[:, :, full.shape[2] - keep:]


def scan_inputs(b, l, d, n, seed, dtype=np.float32):
    """A Mamba layer's scan inputs (activations in dtype, the rest float32), some channels with huge steps (the state
    forgotten) and some with tiny ones."""
    rng = np.random.default_rng(seed)
    f = {"x": rng.standard_normal((b, l, d)), "dt": rng.standard_normal((b, l, d)),
         "A": -np.exp(rng.uniform(0, 3, (d, n))), "B": rng.standard_normal((b, l, n)),
         "C": rng.standard_normal((b, l, n)), "D": rng.standard_normal(d), "z": rng.standard_normal((b, l, d)) * 2,
         "dt_bias": rng.uniform(np.log(np.expm1(1e-3)), np.log(np.expm1(0.1)), d), "h": rng.standard_normal((b, d, n))}
    f["dt_bias"][: d // 3] += 20
    f["dt_bias"][d // 3: 2 * d // 3] -= 20
    return {k: v.astype(dtype if k in ("x", "dt", "B", "C", "z") else np.float32) for k, v in f.items()}


def conv_inputs(b, l, d, k, seed, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return {"x": rng.standard_normal((b, l, d)).astype(dtype),
            "conv_state": rng.standard_normal((b, d, k - 1)).astype(dtype),
            "weight": (rng.standard_normal((d, k)) * 0.5).astype(np.float32),
            "bias": (rng.standard_normal(d) * 3).astype(np.float32)}


def rel_err(got, want) -> float:
    """max |got - want| / max(1, max |want|) over the arrays that hold anything"""
    errs = [float(np.abs(np.asarray(g, np.float64) - w).max() / max(1.0, float(np.abs(w).max())))
            for g, w in zip(got, want) if np.asarray(w).size]
    return max(errs, default=0.0)
