"""Multi-head attention over the last-but-one axis, with any leading batch axes; shared by the query-based
projectors (Cambrian-1's SVA attends per grid cell, mPLUG-Owl2's abstractor over all patches)."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def multi_head_attention(q: Tensor, k: Tensor, v: Tensor, heads: int) -> Tensor:
    """q [..., n, D], k and v [..., m, D] -> [..., n, D]: softmax(q k^T / sqrt(D / heads)) v per head."""
    d = q.shape[-1]
    dh = d // heads

    def split(x: Tensor) -> Tensor:  # [..., t, D] -> [..., heads, t, dh]
        return x.reshape(*x.shape[:-1], heads, dh).transpose(-2, -3)

    attn = torch.softmax((split(q) * dh ** -0.5) @ split(k).transpose(-1, -2), dim=-1)
    y = (attn @ split(v)).transpose(-2, -3)  # [..., n, heads, dh]
    return y.reshape(*y.shape[:-2], d)


class CrossAttention(nn.Module):
    """Queries [..., n, D] attend to a context [..., m, D_ctx] -> [..., n, D]."""

    def __init__(self, dim: int, heads: int, context_dim: int | None = None):
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(context_dim or dim, dim)
        self.v_proj = nn.Linear(context_dim or dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, context: Tensor) -> Tensor:
        y = multi_head_attention(self.q_proj(x), self.k_proj(context), self.v_proj(context), self.heads)
        return self.out_proj(y)


class FeedForward(nn.Module):
    """Linear(D, 4D) -> GELU -> Linear(4D, D)."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(x)))
