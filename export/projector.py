"""Projectors: patch features [b, P, d_vision] -> visual embeddings [b, T, d_model].

Layouts follow Prismatic/Cobra (``projector.0``, ``projector.2``, ``projector.4`` inside an
``nn.Sequential`` named ``projector``) so Cobra checkpoints' ``projector`` state dicts load by name.
"""

from __future__ import annotations

from torch import Tensor, nn

from .config import ModelConfig


class Projector(nn.Module):
    """``fused-gelu-mlp``: Linear(dv, 4 dv) -> GELU -> Linear(4 dv, d) -> GELU -> Linear(d, d) (Cobra);
    ``gelu-mlp``: Linear(dv, d) -> GELU -> Linear(d, d); ``linear``: Linear(dv, d). T = P for all three."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dv, d = cfg.d_vision, cfg.lm.d_model
        if cfg.projector == "fused-gelu-mlp":
            layers = [nn.Linear(dv, 4 * dv), nn.GELU(), nn.Linear(4 * dv, d), nn.GELU(), nn.Linear(d, d)]
        elif cfg.projector == "gelu-mlp":
            layers = [nn.Linear(dv, d), nn.GELU(), nn.Linear(d, d)]
        elif cfg.projector == "linear":
            layers = [nn.Linear(dv, d)]
        else:  # ModelConfig validates the kind; this guards new kinds added there but not here
            raise ValueError(f"projector kind {cfg.projector!r} has no implementation")
        self.projector = nn.Sequential(*layers)

    def forward(self, patch_features: Tensor) -> Tensor:
        """patch_features [b, P, dv] -> visual_embeds [b, T, d]."""
        return self.projector(patch_features)
