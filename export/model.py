"""The whole Cobra-style model: vision encoders -> projector -> Mamba LM, with a deterministic random init."""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .mamba import MambaLM, RMSNorm, init_mamba_weights_
from .projector import Projector
from .vision import FusedVision, LayerScale


class CobraModel(nn.Module):
    """``vision`` and ``projector`` are None for a language-model-only model."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.vision = FusedVision(cfg.vision) if cfg.has_vision else None
        self.projector = Projector(cfg) if cfg.has_vision else None
        self.llm = MambaLM(cfg.lm)

    def visual_embeds(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels uint8 [b, H, W, 3] RGB -> visual_embeds [b, T, d_model]."""
        return self.projector(self.vision(pixels))


def build_random(cfg: ModelConfig, seed: int = 0) -> CobraModel:
    """A model with deterministic random weights whose scale resembles trained ones: layer scales and norms
    away from their identity init, so parity tests exercise every weight."""
    model = CobraModel(cfg)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in [model.vision, model.projector]:
            if module is None:
                continue
            for sub in module.modules():
                if isinstance(sub, LayerScale):
                    sub.gamma.copy_(0.1 + 0.05 * torch.rand(sub.gamma.shape, generator=g))
                elif isinstance(sub, nn.LayerNorm):
                    sub.weight.copy_(1 + 0.1 * torch.randn(sub.weight.shape, generator=g))
                    sub.bias.copy_(0.1 * torch.randn(sub.bias.shape, generator=g))
                elif isinstance(sub, (nn.Linear, nn.Conv2d)):
                    fan_in = sub.weight[0].numel()
                    sub.weight.copy_(torch.randn(sub.weight.shape, generator=g) * fan_in ** -0.5)
                    if sub.bias is not None:
                        sub.bias.copy_(0.02 * torch.randn(sub.bias.shape, generator=g))
            for name, p in module.named_parameters(recurse=True):
                if name.endswith(("cls_token", "reg_token", "pos_embed")):
                    p.copy_(0.1 * torch.randn(p.shape, generator=g))
        init_mamba_weights_(model.llm, seed=seed + 1)
        for sub in model.llm.modules():
            if isinstance(sub, RMSNorm):
                sub.weight.copy_(1 + 0.1 * torch.randn(sub.weight.shape, generator=g))
    return model.eval()
