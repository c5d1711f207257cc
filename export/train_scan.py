"""The selective scan's recurrence for training, fused: forward and backward in the CPU kernel library
(engines/kernels/scan_grad.h) under one autograd function, with ``scan_train`` (export/scan.py: a Python loop of
autograd ops) as the fallback where the library is not built.

Why: in a training step of tiny-ldp-96 (32 scenes x 6 questions + 16 motion items) the loop's per-token autograd
ops, each over a [rows, d_inner, d_state] state, were most of the step (profile: aten::mul, cat, sum and bmm on
those states ~1.6 s of 3.2 s). The kernel keeps each group of 64 channels' state in L1 and never materialises
[b, l, d_inner, d_state]; its backward recomputes the states per group, as mamba_ssm's does.

    from export.train_scan import TRAIN_SCAN          # selective_scan's contract, with the fused recurrence
    y, h = scan_fused(x, delta, A, B, C, h0)          # scan_ref's contract (delta after bias and softplus)

COBRA_EDGE_TRAIN_SCAN=torch forces the Python loop (to compare, or to rule the kernel out).
"""

from __future__ import annotations

import functools
import os

import torch
from torch import Tensor

from .scan import ScanFn, scan_train, selective_scan

ENV = "COBRA_EDGE_TRAIN_SCAN"


@functools.cache
def _library():
    """The kernel library when it has the training recurrence, else None."""
    from engines import kernels

    try:
        lib = kernels.library()
    except kernels.KernelUnavailable:
        return None
    if lib is None or not hasattr(kernels._cdll(str(lib.path)), "cobra_scan_recurrence_grad"):
        return None
    return lib


def _np(t: Tensor):
    return t.detach().to(torch.float32).contiguous().numpy()


class _Recurrence(torch.autograd.Function):
    """(x, delta, A, B, C, h0) -> (y, h_out) through cobra_scan_recurrence; backward through
    cobra_scan_recurrence_grad (scan_grad.h gives the formulas)."""

    @staticmethod
    def forward(ctx, x: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, h0: Tensor):
        from engines.kernels.recurrence import recurrence

        inputs = [t.detach().to(torch.float32).contiguous() for t in (x, delta, A, B, C, h0)]
        y, h_out = recurrence(_library(), *(t.numpy() for t in inputs))
        # saved as tensors, so that autograd refuses a backward after any of them was changed in place
        ctx.save_for_backward(*inputs)
        ctx.dtypes = [t.dtype for t in (x, delta, A, B, C, h0)]
        return torch.from_numpy(y).to(x.dtype), torch.from_numpy(h_out).to(h0.dtype)

    @staticmethod
    def backward(ctx, gy: Tensor | None, gh: Tensor | None):
        from engines.kernels.recurrence import recurrence_grad

        inputs = [t.numpy() for t in ctx.saved_tensors]
        gy_np = _np(gy) if gy is not None else torch.zeros(inputs[0].shape).numpy()
        grads = recurrence_grad(_library(), *inputs, gy_np, None if gh is None else _np(gh))
        return tuple(torch.from_numpy(g).to(dt) if need else None
                     for g, dt, need in zip(grads, ctx.dtypes, ctx.needs_input_grad))


def scan_fused(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """Same contract as export/scan.py's ``scan_ref`` (dt here is the step after bias and softplus), computed by
    the kernel library; equal to the reference within float32 rounding (tests/export/test_train_scan.py)."""
    return _Recurrence.apply(x, dt, A, B, C, h)


def train_recurrence() -> ScanFn:
    """The recurrence training uses here: the fused one when the kernel library has it and $COBRA_EDGE_TRAIN_SCAN
    is not "torch", else ``scan_train``."""
    if os.environ.get(ENV, "").strip().lower() == "torch" or _library() is None:
        return scan_train
    return scan_fused


def _train_scan(x, dt, A, B, C, D, z, dt_bias, h):
    return selective_scan(x, dt, A, B, C, D, z, dt_bias, h, scan=train_recurrence())


# selective_scan's contract with the training recurrence: training, the heads' hidden states, probes
TRAIN_SCAN = _train_scan
