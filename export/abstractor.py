"""mPLUG-Owl2's visual abstractor as a projector: a fixed set of learnable queries cross-attends to the patch
features through a few layers, so the LM pays for ``num_queries`` tokens whatever the patch count.

As in mPLUG-Owl's abstractor, each layer's keys/values are the (normalised) patch features concatenated with
the (normalised) queries, and the feed-forward is SwiGLU; patch features get a fixed 2D sin-cos position code.
(mPLUG-Owl2's modality-adaptive module lives inside its transformer decoder and has no Mamba counterpart.)

Shapes: patch_features [b, P, d_vision] (P = g^2) -> visual_embeds [b, Q, d_model]; D = projector_dim.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import CrossAttention
from .config import ModelConfig


def sincos_2d(grid: int, dim: int) -> Tensor:
    """[grid^2, dim] fixed position code: half the channels encode the row, half the column (MAE's layout)."""
    quarter = dim // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / max(quarter, 1))
    pos = torch.arange(grid, dtype=torch.float64)
    rows, cols = torch.meshgrid(pos, pos, indexing="ij")

    def code(p: Tensor) -> Tensor:
        angles = p.reshape(-1, 1) * omega[None]
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    out = torch.zeros(grid * grid, dim, dtype=torch.float64)
    out[:, : 4 * quarter] = torch.cat([code(rows), code(cols)], dim=1)
    return out.float()


class SwiGLU(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        hidden = int(2 * 4 * dim / 3)
        self.w1 = nn.Linear(dim, hidden)
        self.w3 = nn.Linear(dim, hidden)
        self.w2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(nn.functional.silu(self.w1(x)) * self.w3(x))


class AbstractorLayer(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = CrossAttention(dim, heads)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = SwiGLU(dim)

    def forward(self, q: Tensor, patches: Tensor) -> Tensor:
        """q [b, Q, D], patches [b, P, D] -> q [b, Q, D]."""
        qn = self.norm_q(q)
        q = q + self.attn(qn, torch.cat([self.norm_kv(patches), qn], dim=1))
        return q + self.mlp(self.norm_mlp(q))


class VisualAbstractor(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        D = cfg.projector_dim
        self.feature_proj = nn.Linear(cfg.d_vision, D)
        self.register_buffer("pos", sincos_2d(cfg.vision[0].grid, D), persistent=False)
        self.queries = nn.Parameter(torch.randn(cfg.num_queries, D) * 0.02)
        self.layers = nn.ModuleList(AbstractorLayer(D, cfg.projector_heads) for _ in range(cfg.projector_layers))
        self.norm_out = nn.LayerNorm(D)
        self.visual_fc = nn.Linear(D, cfg.lm.d_model)

    def forward(self, patch_features: Tensor) -> Tensor:
        """patch_features [b, P, d_vision] -> visual_embeds [b, Q, d_model]."""
        patches = self.feature_proj(patch_features) + self.pos
        q = self.queries.expand(patch_features.shape[0], -1, -1)
        for layer in self.layers:
            q = layer(q, patches)
        return self.visual_fc(self.norm_out(q))


