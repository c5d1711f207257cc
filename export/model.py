"""The whole Cobra-style model: vision encoders -> projector -> Mamba LM, with a deterministic random init."""

from __future__ import annotations

import torch
from torch import nn

from .config import ModelConfig
from .mamba import MambaLM, RMSNorm, init_mamba_weights_
from .projector import build_projector
from .vision import FusedVision


class CobraModel(nn.Module):
    """``vision`` and ``projector`` are None for a language-model-only model."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.vision = FusedVision(cfg.vision, fuse=not cfg.multi_scale) if cfg.has_vision else None
        self.projector = build_projector(cfg) if cfg.has_vision else None
        self.llm = MambaLM(cfg.lm)

    def visual_embeds(self, pixels: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        """pixels uint8 [b, H, W, 3] RGB -> the visual tokens the LM sees, [b, T (+ K), d_model]: for models with
        object tokens, one per box of ``boxes`` [b, K, 4] (normalised x1, y1, x2, y2; none when omitted)."""
        features = self.vision(pixels)
        features = features if isinstance(features, tuple) else (features,)
        if not self.cfg.object_tokens:
            return self.projector(*features)
        if boxes is None:
            boxes = torch.zeros(pixels.shape[0], 0, 4)
        visual, objects = self.projector(*features, boxes, torch.ones(boxes.shape[:2], dtype=torch.bool))
        return torch.cat([visual, objects], dim=1)


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
                if isinstance(sub, nn.LayerNorm):
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
                elif name.endswith("queries"):  # SVA / abstractor
                    p.copy_(torch.randn(p.shape, generator=g))
                elif name.endswith("gamma"):  # layer scales (ViT ls1/ls2, ConvNeXt blocks)
                    p.copy_(0.1 + 0.05 * torch.rand(p.shape, generator=g))
        init_mamba_weights_(model.llm, seed=seed + 1)
        for sub in model.llm.modules():
            if isinstance(sub, RMSNorm):
                sub.weight.copy_(1 + 0.1 * torch.randn(sub.weight.shape, generator=g))
    return model.eval()
