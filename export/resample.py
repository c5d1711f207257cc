"""Resampling a square token grid as one matrix (exports to ONNX as a MatMul for any sizes): area pooling to
shrink, bilinear interpolation to grow. Shared by the projectors that change a grid's side (LDP's pooling, the
SVA's and MG's resampling of each encoder's grid).

    m = grid_resample_matrix(24, 12)      # [144, 576]; tokens [b, 576, d] -> m @ tokens: [b, 144, d]
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def adaptive_pool_matrix(n_in: int, n_out: int) -> Tensor:
    """[n_out, n_in] averaging weights of ``adaptive_avg_pool1d`` (bin i covers floor(i n_in / n_out) to
    ceil((i+1) n_in / n_out)). As a matrix the pooling exports to ONNX as one MatMul for any sizes."""
    m = torch.zeros(n_out, n_in)
    for i in range(n_out):
        start, end = (i * n_in) // n_out, math.ceil((i + 1) * n_in / n_out)
        m[i, start:end] = 1.0 / (end - start)
    return m


def bilinear_matrix(n_in: int, n_out: int) -> Tensor:
    """[n_out, n_in] weights of 1D linear interpolation as ``F.interpolate(mode="linear", align_corners=False)``
    (source position (i + 0.5) n_in / n_out - 0.5, clamped at the edges)."""
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        src = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        lo = min(int(src), n_in - 1)
        hi = min(lo + 1, n_in - 1)
        frac = src - lo
        m[i, lo] += 1.0 - frac
        m[i, hi] += frac
    return m.float()


def grid_resample_matrix(g_in: int, g_out: int) -> Tensor:
    """[g_out^2, g_in^2] resampling of a row-major g_in x g_in token grid: area pooling to shrink, bilinear to
    grow, identity when equal."""
    if g_in == g_out:
        return torch.eye(g_in * g_in)
    one = adaptive_pool_matrix(g_in, g_out) if g_out < g_in else bilinear_matrix(g_in, g_out)
    return torch.kron(one, one)
