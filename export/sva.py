"""Cambrian-1's Spatial Vision Aggregator (SVA) as a projector for a Mamba LM.

A G x G grid of learnable queries; query (i, j) attends only to the window of every encoder's feature map that
covers cell (i, j). Encoders may differ in resolution: encoder e's g_e x g_e map is first resampled to
(m_e G) x (m_e G), m_e = max(1, round(g_e / G)) (area pooling down, bilinear up, as fixed matrices that export
to one MatMul), so its window is m_e x m_e. Keys/values are projected per encoder and concatenated per query:
M = sum_e m_e^2 keys. Cambrian also repeats the aggregation inside its LLM; a Mamba deployment does not.

Shapes: b images, features_e [b, g_e^2, c_e] -> visual_embeds [b, G^2, d_model]; D = projector_dim.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .attention import FeedForward, multi_head_attention
from .config import ModelConfig
from .resample import grid_resample_matrix


class SVALayer(nn.Module):
    """One aggregation: queries [b, G^2, D] attend to their windows ([b, G^2, m_e^2, c_e] per encoder)."""

    def __init__(self, dim: int, heads: int, widths: list[int]):
        super().__init__()
        self.heads = heads
        self.norm_q = nn.LayerNorm(dim)
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.ModuleList(nn.Linear(c, dim) for c in widths)
        self.v_proj = nn.ModuleList(nn.Linear(c, dim) for c in widths)
        self.out_proj = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = FeedForward(dim)

    def forward(self, q: Tensor, windows: list[Tensor]) -> Tensor:
        k = torch.cat([proj(w) for proj, w in zip(self.k_proj, windows)], dim=2)  # [b, G^2, M, D]
        v = torch.cat([proj(w) for proj, w in zip(self.v_proj, windows)], dim=2)
        qh = self.q_proj(self.norm_q(q)).unsqueeze(2)  # [b, G^2, 1, D]
        q = q + self.out_proj(multi_head_attention(qh, k, v, self.heads).squeeze(2))
        return q + self.mlp(self.norm_mlp(q))


class SpatialVisionAggregator(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        G, D = cfg.projector_grid, cfg.projector_dim
        self.grid = G
        self.windows = [max(1, round(v.grid / G)) for v in cfg.vision]  # m_e
        for e, (v, m) in enumerate(zip(cfg.vision, self.windows)):
            self.register_buffer(f"resample_{e}", grid_resample_matrix(v.grid, m * G), persistent=False)
        self.kv_norm = nn.ModuleList(nn.LayerNorm(v.width) for v in cfg.vision)
        self.queries = nn.Parameter(torch.randn(G * G, D) * 0.02)
        self.layers = nn.ModuleList(SVALayer(D, cfg.projector_heads, [v.width for v in cfg.vision])
                                    for _ in range(cfg.projector_layers))
        self.out = nn.Sequential(nn.Linear(D, cfg.lm.d_model), nn.GELU(), nn.Linear(cfg.lm.d_model, cfg.lm.d_model))

    def _windows(self, e: int, features: Tensor) -> Tensor:
        """features [b, g_e^2, c] -> windows [b, G^2, m_e^2, c] (row-major cells, row-major inside a window)."""
        G, m = self.grid, self.windows[e]
        x = torch.matmul(getattr(self, f"resample_{e}"), self.kv_norm[e](features))  # [b, (m G)^2, c]
        c = x.shape[-1]
        x = x.reshape(-1, G, m, G, m, c).permute(0, 1, 3, 2, 4, 5)
        return x.reshape(-1, G * G, m * m, c)

    def forward(self, *features: Tensor) -> Tensor:
        """features_e [b, g_e^2, c_e], one per encoder -> visual_embeds [b, G^2, d_model]."""
        windows = [self._windows(e, f) for e, f in enumerate(features)]
        q = self.queries.expand(features[0].shape[0], -1, -1)
        for layer in self.layers:
            q = layer(q, windows)
        return self.out(q)
