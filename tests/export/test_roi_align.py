"""RoIAlign (written with grid_sample so it exports without torchvision) against a direct computation of
torchvision's algorithm (aligned=True, fixed sampling ratio), point by point in plain Python."""

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export.config import preset  # noqa: E402
from export.mg import roi_align  # noqa: E402
from export.model import build_random  # noqa: E402
from tests.conftest import report  # noqa: E402


def _bilinear(fmap: np.ndarray, y: float, x: float) -> np.ndarray:
    """torchvision's bilinear_interpolate for one point of a [C, H, W] map."""
    _, H, W = fmap.shape
    if y < -1.0 or y > H or x < -1.0 or x > W:
        return np.zeros(fmap.shape[0])
    y, x = max(y, 0.0), max(x, 0.0)
    y_lo, x_lo = int(y), int(x)
    if y_lo >= H - 1:
        y_lo = y_hi = H - 1
        y = float(y_lo)
    else:
        y_hi = y_lo + 1
    if x_lo >= W - 1:
        x_lo = x_hi = W - 1
        x = float(x_lo)
    else:
        x_hi = x_lo + 1
    ly, lx = y - y_lo, x - x_lo
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * fmap[:, y_lo, x_lo] + hy * lx * fmap[:, y_lo, x_hi]
            + ly * hx * fmap[:, y_hi, x_lo] + ly * lx * fmap[:, y_hi, x_hi])


def roi_align_reference(fmap: np.ndarray, box, r: int, s: int) -> np.ndarray:
    """One box (x1, y1, x2, y2 in map units) over fmap [C, H, W] -> [C, r, r], aligned=True."""
    x1, y1, x2, y2 = (float(v) - 0.5 for v in box)
    bin_h, bin_w = (y2 - y1) / r, (x2 - x1) / r
    out = np.zeros((fmap.shape[0], r, r))
    for i in range(r):
        for j in range(r):
            acc = np.zeros(fmap.shape[0])
            for a in range(s):
                for b in range(s):
                    y = y1 + i * bin_h + (a + 0.5) * bin_h / s
                    x = x1 + j * bin_w + (b + 0.5) * bin_w / s
                    acc += _bilinear(fmap, y, x)
            out[:, i, j] = acc / (s * s)
    return out


BOXES = {
    "fractional": [1.3, 0.7, 4.9, 3.2],
    "one pixel": [2.0, 2.0, 3.0, 3.0],
    "top-left border": [-0.8, -0.6, 1.7, 2.2],
    "bottom-right border": [4.2, 3.1, 7.9, 6.5],
    "whole map": [0.0, 0.0, 7.0, 6.0],
    "past the border": [6.5, 5.5, 9.0, 8.0],
    "outside": [-5.0, -5.0, -2.5, -2.0],
    "degenerate": [3.3, 2.2, 3.3, 2.2],
}


@pytest.mark.parametrize("r, s", [(2, 2), (3, 1), (1, 4)])
def test_roi_align_matches_direct_computation(r, s):
    g = torch.Generator().manual_seed(0)
    fmap = torch.randn(2, 5, 6, 7, generator=g)  # b=2, C=5, H=6, W=7: non-square catches x/y swaps
    boxes = torch.tensor([list(BOXES.values()), list(reversed(BOXES.values()))])
    got = roi_align(fmap, boxes, r, s).numpy()
    assert got.shape == (2, len(BOXES), 5, r, r)
    worst = 0.0
    for bi in range(2):
        for k in range(len(BOXES)):
            want = roi_align_reference(fmap[bi].double().numpy(), boxes[bi, k].tolist(), r, s)
            worst = max(worst, float(np.abs(got[bi, k] - want).max()))
    report(f"roi_align r={r} s={s}", worst, 1e-5)
    assert worst <= 1e-5
    assert np.all(got[0, list(BOXES).index("outside")] == 0)  # entirely beyond the 1-pixel margin


def test_roi_align_zero_boxes():
    out = roi_align(torch.randn(1, 4, 5, 5), torch.zeros(1, 0, 4), 2)
    assert out.shape == (1, 0, 4, 2, 2)


def test_padding_boxes_are_masked_and_change_nothing():
    model = build_random(preset("tiny-mg"), seed=3)
    pixels = torch.randint(0, 256, (1, 224, 224, 3), dtype=torch.uint8)
    real = torch.tensor([[[0.1, 0.2, 0.6, 0.7], [0.5, 0.0, 1.0, 0.4]]])
    with torch.no_grad():
        low, high = model.vision(pixels)
        vis_a, obj_a = model.projector(low, high, real, torch.ones(1, 2, dtype=torch.bool))
        padded = torch.cat([real, torch.tensor([[[0.3, 0.3, 0.9, 0.9]]])], dim=1)
        vis_b, obj_b = model.projector(low, high, padded, torch.tensor([[True, True, False]]))
        no_boxes = model.visual_embeds(pixels)
    assert torch.equal(vis_a, vis_b) and torch.allclose(obj_a, obj_b[:, :2], atol=1e-6)
    assert torch.all(obj_b[:, 2] == 0) and obj_a.abs().max() > 0
    assert no_boxes.shape == (1, 64, 64) and torch.allclose(no_boxes, vis_a, atol=1e-6)


def test_object_token_sees_its_box():
    """The token of a box changes when the image changes inside the box, not when it changes far outside."""
    model = build_random(preset("tiny-mg"), seed=4)
    pixels = torch.full((1, 224, 224, 3), 100, dtype=torch.uint8)
    box = torch.tensor([[[0.0, 0.0, 0.25, 0.25]]])  # top-left quarter of each axis
    inside, outside = pixels.clone(), pixels.clone()
    inside[:, 10:40, 10:40] = 250
    outside[:, 180:, 180:] = 250  # far from the box (the 7x7 convs reach ~3 map cells; this is >8 away)
    with torch.no_grad():
        base, moved_in, moved_out = (model.visual_embeds(p, box)[:, -1] for p in (pixels, inside, outside))
    assert (moved_in - base).abs().max() > 1e-3
    assert math.isclose(float((moved_out - base).abs().max()), 0.0, abs_tol=1e-5)
