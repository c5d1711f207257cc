"""Frame preprocessing with OpenCV: validate, BGR -> RGB, resize to the model's square input (uint8).

Cobra's ``resize-naive``: a plain resize to S x S, no crop, aspect ratio not kept. Normalisation is not done
here: it lives inside the vision graph, once per encoder.
"""

from __future__ import annotations

import cv2
import numpy as np

from .errors import FrameError


def validate_frame(frame, stream: str = "?") -> np.ndarray:
    """Return ``frame`` if it is a non-empty uint8 BGR image [H, W, 3]; else raise FrameError naming the stream."""
    where = f"stream {stream!r}"
    if frame is None:
        raise FrameError(f"{where}: frame is None (camera returned no image?)")
    if not isinstance(frame, np.ndarray):
        raise FrameError(f"{where}: frame must be a numpy array [H, W, 3] uint8 BGR, got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise FrameError(f"{where}: frame must be [H, W, 3] BGR, got shape {list(frame.shape)}")
    if frame.size == 0:
        raise FrameError(f"{where}: frame is empty (shape {list(frame.shape)})")
    if frame.dtype != np.uint8:
        raise FrameError(f"{where}: frame must be uint8, got {frame.dtype}")
    return frame


def preprocess(frame_bgr: np.ndarray, size: int, stream: str = "?") -> np.ndarray:
    """frame_bgr uint8 [H, W, 3] -> pixels uint8 [size, size, 3] RGB, contiguous."""
    frame = validate_frame(frame_bgr, stream)
    h, w = frame.shape[:2]
    # area averaging when both axes shrink (antialiased, like PIL's bicubic used by Cobra), cubic otherwise
    interp = cv2.INTER_AREA if h >= size and w >= size else cv2.INTER_CUBIC
    resized = frame if (h, w) == (size, size) else cv2.resize(frame, (size, size), interpolation=interp)
    return np.ascontiguousarray(cv2.cvtColor(resized, cv2.COLOR_BGR2RGB))
