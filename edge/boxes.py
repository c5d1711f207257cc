"""Detector boxes for models with object tokens (MG-LLaVA's flow): checked, padded, and turned into graph feeds.

Boxes are (x1, y1, x2, y2) normalised to [0, 1] over the frame, so they stay valid through the naive resize.
A coordinate outside [0, 1] is refused (a box in pixels, or one off the frame, would silently act as no box):
clip a detector's boxes to the frame and divide x by the frame's width, y by its height. With no boxes the
projector still runs once on a single masked padding box (a graph axis cannot be empty) and no object token
reaches the LM.
"""

from __future__ import annotations

import numpy as np

from .errors import FrameError


def box_feeds(boxes, stream: str) -> tuple[dict[str, np.ndarray], int]:
    """boxes: None or array-like [K, 4] -> ({"boxes": float32 [1, max(K, 1), 4], "box_mask": bool [1, ...]}, K)."""
    if boxes is None:
        arr = np.zeros((0, 4), np.float32)
    else:
        try:
            arr = np.asarray(boxes, dtype=np.float32)
        except (TypeError, ValueError) as e:
            raise FrameError(f"stream {stream!r}: boxes must be numbers shaped [K, 4], got {type(boxes).__name__}: {e}") from None
        if arr.size == 0:
            arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise FrameError(f"stream {stream!r}: boxes must be shaped [K, 4] (x1, y1, x2, y2 in [0, 1]), got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise FrameError(f"stream {stream!r}: boxes hold NaN or infinite values")
    outside = np.flatnonzero(((arr < 0) | (arr > 1)).any(axis=1))
    if outside.size:
        i = int(outside[0])
        hint = (" (pixel coordinates? divide x by the frame's width and y by its height)" if arr.max() > 1.5
                else " (clip it to the frame first)")
        raise FrameError(f"stream {stream!r}: box {i} {arr[i].tolist()} is outside [0, 1]: boxes are (x1, y1, x2, y2) "
                         f"normalised over the frame{hint}; {outside.size} of {len(arr)} boxes are outside")
    bad = np.flatnonzero((arr[:, 2] < arr[:, 0]) | (arr[:, 3] < arr[:, 1]))
    if bad.size:
        raise FrameError(f"stream {stream!r}: box {int(bad[0])} {arr[bad[0]].tolist()} has x2 < x1 or y2 < y1")
    k = len(arr)
    padded = arr if k else np.zeros((1, 4), np.float32)
    mask = np.arange(len(padded)) < k
    return {"boxes": np.ascontiguousarray(padded[None]), "box_mask": mask[None]}, k
