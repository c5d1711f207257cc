"""ConvNeXt in timm's parameter layout: the high-resolution convolutional encoder of MG-LLaVA (ConvNeXt-L) and
Cambrian-1 (CLIP ConvNeXt-XXL).

Names match timm's ``ConvNeXt`` (``stem.0`` conv 4x4/4, ``stem.1`` LayerNorm2d, ``stages.N.downsample.{0,1}``
LayerNorm2d + conv 2x2/2, ``stages.N.blocks.M.{conv_dw,norm,mlp.fc1,mlp.fc2,gamma}``), so timm state dicts
load by name. The last stage's map is the feature map; the head is never built.

Shapes: b images, H = W = image_size, stride 4 * 2**(stages-1), g = H / stride, c = dims[-1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .attention import FeedForward
from .config import VisionEncoderConfig


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a [b, c, h, w] map."""

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """depthwise 7x7 -> LayerNorm -> MLP (4x, GELU) -> layer scale, residual: [b, c, h, w] -> same."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.mlp = FeedForward(dim)  # timm names: mlp.fc1, mlp.fc2
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv_dw(x).permute(0, 2, 3, 1)
        y = self.mlp(self.norm(y)) * self.gamma
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtStage(nn.Module):
    def __init__(self, dim_in: int, dim: int, depth: int, eps: float, downsample: bool):
        super().__init__()
        self.downsample = nn.Sequential(LayerNorm2d(dim_in, eps=eps), nn.Conv2d(dim_in, dim, 2, stride=2)) if downsample else nn.Identity()
        self.blocks = nn.Sequential(*(ConvNeXtBlock(dim, eps) for _ in range(depth)))

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.downsample(x))


class ConvNeXtEncoder(nn.Module):
    """Normalised float pixels [b, 3, H, W] -> last-stage features as tokens [b, g*g, c] (row-major grid)."""

    def __init__(self, cfg: VisionEncoderConfig):
        super().__init__()
        self.cfg = cfg
        dims, depths, eps = cfg.convnext_dims, cfg.convnext_depths, cfg.norm_eps
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, stride=4), LayerNorm2d(dims[0], eps=eps))
        self.stages = nn.Sequential(*(
            ConvNeXtStage(dims[max(i - 1, 0)], dims[i], depths[i], eps, downsample=i > 0) for i in range(len(dims))
        ))
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)

    def feature_map(self, rgb01: Tensor) -> Tensor:
        """rgb01 [b, 3, H, W] in [0, 1] -> [b, c, g, g]."""
        return self.stages(self.stem((rgb01 - self.mean) / self.std))

    def forward(self, rgb01: Tensor) -> Tensor:
        return self.feature_map(rgb01).flatten(2).transpose(1, 2)
