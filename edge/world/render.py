"""Pixels of a scene: OpenCV drawing on a textured, noisy background. BGR uint8 [H, W, 3], as a camera gives."""

from __future__ import annotations

import functools

import cv2
import numpy as np

from . import spec
from .scene import Background, Scene


def _bgr(rgb) -> tuple[int, int, int]:
    return int(rgb[2]), int(rgb[1]), int(rgb[0])


def _background(bg: Background, width: int, height: int) -> np.ndarray:
    """BGR uint8 [H, W, 3] without noise (a new array, to draw on)."""
    return _tones(bg, width, height).copy()


@functools.lru_cache(maxsize=4)  # a sequence's frames share one background
def _tones(bg: Background, width: int, height: int) -> np.ndarray:
    """BGR uint8 [H, W, 3] without noise: a tone map t in [0, 255] between the base and the second tone. Cached:
    read only."""
    if bg.kind == "flat":
        t = np.zeros((height, width), np.uint8)
    else:
        x, y = np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)[:, None]
        if bg.kind == "checker":
            t = (((x // bg.period) + (y // bg.period)) % 2 * 255).astype(np.uint8)
        else:
            along = x * np.float32(np.cos(bg.angle)) + y * np.float32(np.sin(bg.angle))  # [H, W] by broadcasting
            if bg.kind == "gradient":
                lo, hi = float(along.min()), float(along.max())
                t = ((along - lo) * (255 / max(hi - lo, 1.0))).astype(np.uint8)
            else:  # stripes
                t = ((along // (bg.period / 2)) % 2 * 255).astype(np.uint8)
    ramp = np.arange(256, dtype=np.float32)[:, None] / 255  # LUT per channel: base + t (second - base)
    base, second = np.array(bg.base[::-1], np.float32), np.array(bg.second[::-1], np.float32)
    lut = np.clip(np.round(base + ramp * (second - base)), 0, 255).astype(np.uint8).reshape(256, 1, 3)
    out = cv2.LUT(cv2.merge([t, t, t]), lut)
    out.flags.writeable = False
    return out


def _add_noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Gaussian noise of ``sigma`` (rounded to integers, saturating): a NOISE_TILE square tile repeated from a
    random offset."""
    n = spec.NOISE_TILE
    height, width = img.shape[:2]
    tile = np.round(rng.normal(0.0, sigma, (n, n, 3))).astype(np.int16)
    oy, ox = rng.integers(0, n, 2)
    reps = (-(-(height + oy) // n), -(-(width + ox) // n), 1)
    pos = np.tile(np.clip(tile, 0, 255).astype(np.uint8), reps)[oy:oy + height, ox:ox + width]
    neg = np.tile(np.clip(-tile, 0, 255).astype(np.uint8), reps)[oy:oy + height, ox:ox + width]
    return cv2.subtract(cv2.add(img, pos), neg)


def render(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """The scene as a BGR uint8 frame [height, width, 3]. ``rng`` draws the frame's sensor noise only (the
    geometry is the scene's), so two frames of one still scene differ as two camera frames do."""
    w, h = scene.width, scene.height
    short = min(w, h)
    img = _background(scene.background, w, h)
    for d in scene.distractors:
        if d[0] == "line":
            _, x1, y1, x2, y2, thick, grey = d
            cv2.line(img, (int(x1 * w), int(y1 * h)), (int(x2 * w), int(y2 * h)), (grey,) * 3, thick, cv2.LINE_AA)
        else:
            _, x, y, r, grey = d
            cv2.circle(img, (int(x * w), int(y * h)), max(1, int(r * short)), (grey,) * 3, -1, cv2.LINE_AA)
    for s in scene.shapes:
        cx, cy, half = s.cx * w, s.cy * h, s.size * short / 2
        colour = _bgr(s.fill)
        if s.kind == "circle":
            cv2.circle(img, (round(cx), round(cy)), round(half), colour, -1, cv2.LINE_AA)
        elif s.kind == "square":
            cv2.rectangle(img, (round(cx - half), round(cy - half)), (round(cx + half), round(cy + half)), colour, -1)
        else:  # an upright triangle filling its bounding box
            pts = np.array([[cx, cy - half], [cx - half, cy + half], [cx + half, cy + half]]).round().astype(np.int32)
            cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)
    return _add_noise(img, rng, scene.background.noise_sigma)
