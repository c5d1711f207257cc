"""Vision encoders: ViTs in timm's parameter layout, and Cobra's channel-wise fusion of several of them.

Parameter names match timm's ``VisionTransformer`` (``patch_embed.proj``, ``cls_token``, ``reg_token``,
``pos_embed``, ``blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2,ls2.gamma}``) so that
timm state dicts of DINOv2 and SigLIP load by name. Blocks after ``feature_block`` are not built: Cobra reads
the second-to-last block's output, so the last block would be dead weight in the graph.

Shapes: b images, H = W = image_size, p = patch_size, g = grid = H / p, P = g * g patches, c = width.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import VisionEncoderConfig


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, qkv_bias: bool):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=qkv_bias)
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        """x [b, t, c] -> [b, t, c]."""
        (b, t, c) = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # [b, heads, t, c/heads]
        attn = (q * (c // self.heads) ** -0.5) @ k.transpose(-2, -1)
        y = attn.softmax(dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int, act: str):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)
        self.act = act

    def forward(self, x: Tensor) -> Tensor:
        h = self.fc1(x)
        if self.act == "quick_gelu":  # OpenAI CLIP
            h = h * torch.sigmoid(1.702 * h)
        else:
            h = F.gelu(h, approximate="tanh" if self.act == "gelu_tanh" else "none")
        return self.fc2(h)


class LayerScale(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((width,), 1e-5))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, cfg: VisionEncoderConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.attn = Attention(cfg.width, cfg.heads, cfg.qkv_bias)
        self.ls1 = LayerScale(cfg.width) if cfg.layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(cfg.width, eps=cfg.norm_eps)
        self.mlp = Mlp(cfg.width, cfg.mlp_hidden, cfg.act)
        self.ls2 = LayerScale(cfg.width) if cfg.layer_scale else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class PatchEmbed(nn.Module):
    def __init__(self, cfg: VisionEncoderConfig):
        super().__init__()
        self.proj = nn.Conv2d(3, cfg.width, kernel_size=cfg.patch_size, stride=cfg.patch_size)

    def forward(self, x: Tensor) -> Tensor:
        """x [b, 3, H, W] -> [b, P, c]."""
        return self.proj(x).flatten(2).transpose(1, 2)


class ViTEncoder(nn.Module):
    """One encoder: normalised float pixels -> features of its ``feature_block`` for the patch tokens."""

    def __init__(self, cfg: VisionEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        if cfg.class_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, cfg.width))
        if cfg.reg_tokens:
            self.reg_token = nn.Parameter(torch.zeros(1, cfg.reg_tokens, cfg.width))
        pos_len = cfg.num_patches + (0 if cfg.no_embed_class else cfg.num_prefix_tokens)
        self.pos_embed = nn.Parameter(torch.randn(1, pos_len, cfg.width) * 0.02)
        self.norm_pre = nn.LayerNorm(cfg.width, eps=cfg.norm_eps) if cfg.pre_norm else nn.Identity()
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.blocks_used))
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)

    def _prefix_and_pos(self, x: Tensor) -> Tensor:
        """x [b, P, c] -> [b, prefix + P, c]: timm's ``_pos_embed`` for both layouts (with ``no_embed_class``
        the position embedding covers patches only; otherwise it covers class/register tokens too)."""
        cfg = self.cfg
        b = x.shape[0]
        prefix = [self.cls_token.expand(b, -1, -1)] if cfg.class_token else []
        if cfg.reg_tokens:
            prefix.append(self.reg_token.expand(b, -1, -1))
        if cfg.no_embed_class:
            return torch.cat(prefix + [x + self.pos_embed], dim=1)
        return torch.cat(prefix + [x], dim=1) + self.pos_embed

    def forward(self, rgb01: Tensor) -> Tensor:
        """rgb01 [b, 3, H, W] float in [0, 1] -> patch features [b, P, c]."""
        x = (rgb01 - self.mean) / self.std
        x = self.norm_pre(self._prefix_and_pos(self.patch_embed(x)))
        for block in self.blocks:
            x = block(x)
        return x[:, self.cfg.num_prefix_tokens:]


def resample(rgb01: Tensor, size: int) -> Tensor:
    """[b, 3, S, S] -> [b, 3, size, size]: area average when S is a multiple of size (as OpenCV's INTER_AREA),
    else bilinear. How an encoder of a lower resolution than the vision graph's input sees the frame."""
    side = rgb01.shape[-1]
    if side == size:
        return rgb01
    if side % size == 0:
        return F.avg_pool2d(rgb01, side // size)
    return F.interpolate(rgb01, size=(size, size), mode="bilinear", align_corners=False)


def build_encoder(cfg: VisionEncoderConfig) -> nn.Module:
    if cfg.kind == "convnext":
        from .convnext import ConvNeXtEncoder

        return ConvNeXtEncoder(cfg)
    return ViTEncoder(cfg)


class FusedVision(nn.Module):
    """The vision graph: uint8 RGB pixels [b, H, W, 3] -> encoder features.

    Each encoder applies its own normalisation inside, at its own resolution (resampled from the input when
    smaller). ``fuse=True`` (Cobra): features concatenated on channels, DINOv2 first then SigLIP as Prismatic's
    ``DinoSigLIPViTBackbone`` -> patch_features [b, P, sum(c_i)]. ``fuse=False`` (multi-scale projectors):
    a tuple with one [b, P_i, c_i] per encoder.
    """

    def __init__(self, cfgs: tuple[VisionEncoderConfig, ...], fuse: bool = True):
        super().__init__()
        self.encoders = nn.ModuleList(build_encoder(c) for c in cfgs)
        self.fuse = fuse

    def forward(self, pixels: Tensor) -> Tensor | tuple[Tensor, ...]:
        rgb01 = pixels.permute(0, 3, 1, 2).float() / 255.0
        feats = tuple(enc(resample(rgb01, enc.cfg.image_size)) for enc in self.encoders)
        return torch.cat(feats, dim=-1) if self.fuse else feats
