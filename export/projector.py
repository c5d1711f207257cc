"""Projectors: patch features [b, P, d_vision] -> visual embeddings [b, T, d_model].

Layouts follow Prismatic/Cobra (``projector.0``, ``projector.2``, ``projector.4`` inside an
``nn.Sequential`` named ``projector``) so Cobra checkpoints' ``projector`` state dicts load by name.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .config import LDP_KINDS, ModelConfig
from .resample import adaptive_pool_matrix


class TokenDown(nn.Module):
    """Adaptive average pooling of a g x g token grid to s x s: [b, g*g, c] -> [b, s*s, c] (row-major grid)."""

    def __init__(self, grid_in: int, grid_out: int):
        super().__init__()
        pool = adaptive_pool_matrix(grid_in, grid_out)
        self.register_buffer("pool", torch.kron(pool, pool), persistent=False)  # [s*s, g*g]

    def forward(self, x: Tensor) -> Tensor:
        return torch.matmul(self.pool, x)


class PosInject(nn.Module):
    """Depthwise 3x3 convolution over the token grid, added residually (Twins' PEG): [b, s*s, c] -> same."""

    def __init__(self, dim: int):
        super().__init__()
        self.peg = nn.Sequential(nn.Conv2d(dim, dim, 3, 1, 1, bias=True, groups=dim))

    def forward(self, x: Tensor) -> Tensor:
        (b, t, c) = x.shape
        s = math.isqrt(t)
        grid = x.transpose(1, 2).reshape(b, c, s, s)
        return (self.peg(grid) + grid).flatten(2).transpose(1, 2)


class Projector(nn.Module):
    """``fused-gelu-mlp``: Linear(dv, 4 dv) -> GELU -> Linear(4 dv, d) -> GELU -> Linear(d, d) (Cobra);
    ``gelu-mlp``: Linear(dv, d) -> GELU -> Linear(d, d); ``linear``: Linear(dv, d); T = P for these.
    ``fused-ldpnet`` (Cobra's LDP): Linear(dv, 4 dv) -> GELU -> Linear(4 dv, d) -> pool the grid to
    projector_grid^2 -> + depthwise 3x3 conv; ``ldpnet``: the same with Linear(dv, d) -> GELU -> Linear(d, d)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dv, d = cfg.d_vision, cfg.lm.d_model
        if cfg.projector == "fused-gelu-mlp":
            layers = [nn.Linear(dv, 4 * dv), nn.GELU(), nn.Linear(4 * dv, d), nn.GELU(), nn.Linear(d, d)]
        elif cfg.projector == "gelu-mlp":
            layers = [nn.Linear(dv, d), nn.GELU(), nn.Linear(d, d)]
        elif cfg.projector == "linear":
            layers = [nn.Linear(dv, d)]
        elif cfg.projector in LDP_KINDS:
            hidden = 4 * dv if cfg.projector == "fused-ldpnet" else d
            first = [nn.Linear(dv, hidden), nn.GELU(), nn.Linear(hidden, d)]
            layers = first + [TokenDown(cfg.vision[0].grid, cfg.projector_grid), PosInject(d)]
        else:  # ModelConfig validates the kind; this guards new kinds added there but not here
            raise ValueError(f"projector kind {cfg.projector!r} has no implementation")
        self.projector = nn.Sequential(*layers)

    def forward(self, patch_features: Tensor) -> Tensor:
        """patch_features [b, P, dv] -> visual_embeds [b, T, d]."""
        return self.projector(patch_features)


def build_projector(cfg: ModelConfig) -> nn.Module:
    """The projector module of ``cfg.projector``. Its forward takes the vision graph's outputs (one tensor, or
    one per encoder for multi-scale kinds; then boxes for object tokens) and returns visual_embeds."""
    if cfg.projector == "sva":
        from .sva import SpatialVisionAggregator

        return SpatialVisionAggregator(cfg)
    if cfg.projector == "mg-conv-gate":
        from .mg import MultiGranularityProjector

        return MultiGranularityProjector(cfg)
    if cfg.projector == "abstractor":
        from .abstractor import VisualAbstractor

        return VisualAbstractor(cfg)
    return Projector(cfg)
