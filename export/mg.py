"""MG-LLaVA's multi-granularity vision flow as a projector: Conv-Gate fusion of a low-resolution ViT and a
high-resolution convolutional map, plus object-level tokens pooled by RoIAlign from detector boxes.

Shapes: b images; low-res ViT features [b, g^2, c_lo]; high-res map features [b, gh^2, c_hi]; boxes [b, K, 4]
as (x1, y1, x2, y2) normalised to [0, 1] over the frame (a naive resize keeps them valid), box_mask [b, K] bool
-> visual_embeds [b, g^2, d_model] and object_embeds [b, K, d_model] (zero where the mask is False; the runtime
drops those tokens before prefill, so a padding box costs nothing in the LM).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import ModelConfig
from .resample import grid_resample_matrix

ROI_SAMPLES = 2  # RoIAlign sampling points per bin and axis: fixed (torchvision's adaptive -1 is data-dependent)


def roi_align(features: Tensor, boxes: Tensor, output_size: int, sampling_ratio: int = ROI_SAMPLES) -> Tensor:
    """RoIAlign (torchvision's algorithm with ``aligned=True``), batched per image, written with ``grid_sample``
    so it exports to ONNX (GridSample) without torchvision.

    features [b, C, H, W]; boxes [b, K, 4] (x1, y1, x2, y2) in feature-map units, edges at 0 and W
    -> [b, K, C, r, r]. A sample point beyond one pixel outside the map reads 0; points inside that margin are
    clamped to the border, as in torchvision.
    """
    b, C, H, W = features.shape
    r, s = output_size, sampling_ratio
    K = boxes.shape[1]
    x1, y1, x2, y2 = (boxes[..., i] - 0.5 for i in range(4))  # aligned: pixel centres at integer + 0.5
    t = (torch.arange(r, dtype=features.dtype)[:, None] + (torch.arange(s, dtype=features.dtype)[None] + 0.5) / s)
    t = t.reshape(-1) / r  # [r*s] fractions of the box
    ys = y1[..., None] + t * (y2 - y1)[..., None]  # [b, K, r*s]
    xs = x1[..., None] + t * (x2 - x1)[..., None]
    valid = (((ys >= -1) & (ys <= H)).unsqueeze(-1) & ((xs >= -1) & (xs <= W)).unsqueeze(-2)).to(features.dtype)
    gy = ys.clamp(0, H - 1) / max(H - 1, 1) * 2 - 1  # align_corners=True: -1 and 1 are the border pixel centres
    gx = xs.clamp(0, W - 1) / max(W - 1, 1) * 2 - 1
    n = r * s
    grid = torch.stack([gx.unsqueeze(-2).expand(b, K, n, n), gy.unsqueeze(-1).expand(b, K, n, n)], dim=-1)
    sampled = F.grid_sample(features, grid.reshape(b, K * n, n, 2), mode="bilinear", padding_mode="border",
                            align_corners=True)  # [b, C, K*n, n]
    sampled = sampled.reshape(b, C, K, n, n) * valid.unsqueeze(1)
    pooled = sampled.reshape(b, C, K, r, s, r, s).mean(dim=(4, 6))  # [b, C, K, r, r]
    return pooled.permute(0, 2, 1, 3, 4)


class ConvGate(nn.Module):
    """low [b, g^2, c_lo], high [b, gh^2, c_hi] -> low + sigmoid(conv3x3([low, high'])) * high', where high' is the
    high-res map area-pooled to the g x g grid and projected to c_lo."""

    def __init__(self, grid: int, grid_high: int, c_lo: int, c_hi: int):
        super().__init__()
        self.grid = grid
        self.register_buffer("down", grid_resample_matrix(grid_high, grid), persistent=False)
        self.high_proj = nn.Linear(c_hi, c_lo)
        self.gate = nn.Conv2d(2 * c_lo, c_lo, 3, padding=1)

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        b, _, c = low.shape
        h = self.high_proj(torch.matmul(self.down, high))  # [b, g^2, c_lo]
        both = torch.cat([low, h], dim=-1).transpose(1, 2).reshape(b, 2 * c, self.grid, self.grid)
        gate = torch.sigmoid(self.gate(both)).flatten(2).transpose(1, 2)
        return low + gate * h


class MultiGranularityProjector(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        low, high = cfg.vision
        d = cfg.lm.d_model
        self.grid_high = high.grid
        self.roi_size = cfg.roi_size
        self.conv_gate = ConvGate(low.grid, high.grid, low.width, high.width)
        self.mlp = nn.Sequential(nn.Linear(low.width, d), nn.GELU(), nn.Linear(d, d))
        self.box_mlp = nn.Sequential(nn.Linear(high.width, d), nn.GELU(), nn.Linear(d, d))

    def object_features(self, high: Tensor, boxes: Tensor) -> Tensor:
        """high [b, gh^2, c_hi], boxes [b, K, 4] normalised -> RoIAlign pooled per box [b, K, c_hi]."""
        b, _, c = high.shape
        fmap = high.transpose(1, 2).reshape(b, c, self.grid_high, self.grid_high)
        return roi_align(fmap, boxes * self.grid_high, self.roi_size).mean(dim=(-1, -2))

    def forward(self, low: Tensor, high: Tensor, boxes: Tensor, box_mask: Tensor) -> tuple[Tensor, Tensor]:
        visual = self.mlp(self.conv_gate(low, high))
        objects = self.box_mlp(self.object_features(high, boxes)) * box_mask.unsqueeze(-1).to(visual.dtype)
        return visual, objects
