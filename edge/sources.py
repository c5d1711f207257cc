"""Frame sources: a synthetic scene of moving shapes, video files / devices through OpenCV, a folder of images.

Every source yields ``(frame_bgr uint8 [H, W, 3], timestamp seconds)``.
"""

from __future__ import annotations

import time
from typing import Iterator

import cv2
import numpy as np

from .errors import CobraEdgeError


class SourceError(CobraEdgeError, IOError):
    """A source cannot be opened or read (names the file or device)."""


class SyntheticSource:
    """Shapes that move over a textured background; deterministic per seed, no camera needed.

    Each frame is stamped with wall-clock time at capture, as a camera driver would. ``boxes`` holds the
    shapes' bounding boxes in the last frame, [3, 4] (x1, y1, x2, y2) normalised, as a detector would report
    them (for models with object tokens).
    """

    kind = "synthetic"

    def __init__(self, width: int = 320, height: int = 240, seed: int = 0):
        self.width, self.height = width, height
        rng = np.random.default_rng(seed)
        self._background = (rng.integers(0, 60, (height, width, 3))).astype(np.uint8)
        self._shapes = [
            {"kind": kind, "color": tuple(int(c) for c in rng.integers(80, 256, 3)),
             "pos": rng.uniform(0.1, 0.9, 2), "vel": rng.uniform(-0.03, 0.03, 2), "size": rng.uniform(0.08, 0.2)}
            for kind in ("circle", "square", "triangle")
        ]
        self.index = 0
        self.boxes = np.zeros((0, 4), np.float32)

    def read(self) -> tuple[np.ndarray, float]:
        frame = self._background.copy()
        w, h = self.width, self.height
        boxes = []
        for s in self._shapes:
            s["pos"] = s["pos"] + s["vel"]
            for axis in range(2):  # bounce off the borders
                if not 0.05 < s["pos"][axis] < 0.95:
                    s["vel"][axis] = -s["vel"][axis]
            cx, cy, r = int(s["pos"][0] * w), int(s["pos"][1] * h), int(s["size"] * min(w, h))
            if s["kind"] == "circle":
                cv2.circle(frame, (cx, cy), r, s["color"], -1)
            elif s["kind"] == "square":
                cv2.rectangle(frame, (cx - r, cy - r), (cx + r, cy + r), s["color"], -1)
            else:
                pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], dtype=np.int32)
                cv2.fillPoly(frame, [pts], s["color"])
            boxes.append([(cx - r) / w, (cy - r) / h, (cx + r) / w, (cy + r) / h])
        self.boxes = np.clip(np.array(boxes, np.float32), 0.0, 1.0)
        self.index += 1
        return frame, time.time()

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        while True:
            yield self.read()


class VideoSource:
    """A video file (or device index / GStreamer pipeline string) read with OpenCV.

    ``loop``: start again at the end (for profiling on a short clip). ``paced``: deliver a file's frames at its
    frame rate, as a camera would: ``read()`` waits until the next frame is due (first read + n / ``fps`` seconds)
    and, when the reader is late, passes over the frames whose successors are due too (counted in ``passed_over``;
    a camera's driver would have lost them). Unpaced (the default), a file is read as fast as it is asked, faster or
    slower than real time. A device (an int index) is paced by the device itself (``live``). Timestamps: wall-clock
    at read; paced, the wall-clock time the frame was due (its capture time, had a camera taken it).
    """

    def __init__(self, path: str | int, loop: bool = False, paced: bool = False):
        self.path = path
        self.loop = loop
        self.live = isinstance(path, int)
        self.kind = "camera" if self.live else "video"
        self._cap = cv2.VideoCapture(path)
        if not self._cap.isOpened():
            raise SourceError(f"cannot open video source {path!r} (missing file, unsupported codec or no device)")
        fps = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps: float | None = fps if np.isfinite(fps) and fps > 0 else None  # the container's frame rate
        self.paced = bool(paced) and not self.live
        if self.paced and self.fps is None:
            raise SourceError(f"cannot pace video source {path!r}: it reports no frame rate")
        self.index = 0  # frames delivered
        self.passed_over = 0  # paced: frames skipped because a later one was already due
        self._clock_start: float | None = None  # time.monotonic() of the first paced read
        self._media_index = 0  # paced: frames consumed from the clip (delivered + passed over), across loops

    def read(self) -> tuple[np.ndarray, float] | None:
        due = None
        if self.paced:
            now = time.monotonic()
            if self._clock_start is None:
                self._clock_start = now
            latest_due = int((now - self._clock_start) * self.fps)  # the newest frame whose time has come
            while self._media_index < latest_due:  # late: those frames are gone, as they would be from a camera
                if not self._next(decode=False):
                    return None
                self.passed_over += 1
            due = self._clock_start + self._media_index / self.fps
            if due > now:
                time.sleep(due - now)
        ok, frame = self._next(decode=True)
        if not ok:
            return None
        self.index += 1
        if due is None:
            return frame, time.time()
        return frame, time.time() - (time.monotonic() - due)

    def _next(self, decode: bool):
        """Advance one frame of the clip (looping if asked); -> (ok, frame) when decoding, else ok."""
        for attempt in range(2):
            ok = self._cap.grab()
            if ok:
                self._media_index += 1
                return (True, self._cap.retrieve()[1]) if decode else True
            if not (self.loop and attempt == 0 and self._media_index > 0):
                break
            self._cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        return (False, None) if decode else False

    def describe(self) -> dict:
        """What the profile reports of this source: kind, path, frame rate, whether it is paced."""
        return {"kind": self.kind, "path": str(self.path), "fps": self.fps, "paced": self.paced or self.live,
                "passed_over": self.passed_over}

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        while (item := self.read()) is not None:
            yield item

    def close(self) -> None:
        self._cap.release()


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class ImageFolderSource:
    """The images of a folder in name order (``loop``: start again at the end). A file that cannot be decoded is
    skipped and counted (``skipped``: path -> reason, ``skips``: how many times); the next readable image comes in
    its place. Only when no file of the folder can be read is it an error (SourceError naming the folder)."""

    kind = "images"

    def __init__(self, folder: str, loop: bool = False, max_pixels: int | None = None):
        from pathlib import Path

        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SourceError(f"image folder {str(self.folder)!r} does not exist or is not a folder")
        self.files = sorted(p for p in self.folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"image folder {str(self.folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        self.loop = loop
        self.max_pixels = max_pixels
        self.index = 0
        self.skipped: dict[str, str] = {}
        self.skips = 0

    def read(self) -> tuple[np.ndarray, float] | None:
        tried = 0
        while tried < len(self.files):
            if self.index >= len(self.files) and not self.loop:
                return None
            path = self.files[self.index % len(self.files)]
            self.index += 1
            tried += 1
            try:
                frame = read_image(path, self.max_pixels)
            except SourceError as e:
                self.skipped[str(path)] = str(e)
                self.skips += 1
                continue
            return frame, time.time()
        raise SourceError(f"image folder {str(self.folder)!r}: none of its {len(self.files)} images can be read "
                          f"(e.g. {next(iter(self.skipped.values()))})")

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        while (item := self.read()) is not None:
            yield item


def read_image(path, max_pixels: int | None = None) -> np.ndarray:
    """One image file -> uint8 BGR [H, W, 3]; SourceError naming the file when it cannot be decoded or its header
    claims more than ``max_pixels`` pixels (checked before decoding: see edge.imageheader)."""
    from .imageheader import ImageHeaderError, check_encoded

    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as e:
        raise SourceError(f"cannot read image {str(path)!r}: {e}") from None
    try:
        if max_pixels is not None:
            check_encoded(data, max_pixels, f"image {str(path)!r}", require_known=False)
        frame = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except (ImageHeaderError, cv2.error) as e:
        raise SourceError(f"cannot decode image {str(path)!r}: {e}") from None
    if frame is None:
        raise SourceError(f"cannot decode image {str(path)!r}")
    return frame
