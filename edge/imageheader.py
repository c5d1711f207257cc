"""Image sizes read from encoded headers, before anything is decoded.

A 140 KB PNG can claim 12000 x 12000 pixels (0.4 GB of BGR once decoded), and one claiming 100000 x 100000 makes
OpenCV raise. So encoded images from outside (camera messages, image folders) are measured first: PNG's IHDR,
JPEG's start-of-frame, BMP's info header, and refused above a pixel limit the user sets. The default admits every
8K camera (DCI 8K, 8192 x 4320 = 35.4 MP, 106 MB as BGR).
"""

from __future__ import annotations

import struct

import numpy as np

from .errors import FrameError

DEFAULT_MAX_PIXELS = 8192 * 4320
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# JPEG start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic); not C4/C8/CC
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RST0-7 carry no length


class ImageHeaderError(FrameError):
    """An encoded image whose header is missing, malformed, or claims too many pixels (names what and why)."""


def image_size(data: bytes | memoryview | np.ndarray, what: str = "image") -> tuple[str, int, int] | None:
    """(format, width, height) from the header of PNG, JPEG or BMP bytes; None for other formats.
    ImageHeaderError when the bytes start like one of them but the header is truncated or malformed."""
    b = _as_uint8(data)
    head = b[:26].tobytes()
    if head[:8] == PNG_SIGNATURE:
        if len(head) < 24 or head[12:16] != b"IHDR":
            raise ImageHeaderError(f"{what}: PNG without an IHDR header (truncated?)")
        w, h = struct.unpack(">II", head[16:24])
        return "png", w, h
    if head[:2] == b"\xff\xd8":
        return ("jpeg", *_jpeg_size(b, what))
    if head[:2] == b"BM":
        if len(head) < 26:
            raise ImageHeaderError(f"{what}: BMP header truncated")
        w, h = struct.unpack("<ii", head[18:26])
        return "bmp", abs(w), abs(h)
    return None


def _as_uint8(data) -> np.ndarray:
    """bytes, memoryview or a uint8 array as a flat uint8 array (no copy)."""
    return data.reshape(-1) if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)


def _jpeg_size(b: np.ndarray, what: str) -> tuple[int, int]:
    """Walk the JPEG markers up to the first start-of-frame; -> (width, height)."""
    i, n = 2, len(b)
    while i < n:
        if b[i] != 0xFF:
            raise ImageHeaderError(f"{what}: JPEG marker expected at byte {i}, found 0x{b[i]:02x} (corrupt header)")
        while i < n and b[i] == 0xFF:  # fill bytes
            i += 1
        if i >= n:
            break
        marker = int(b[i])
        i += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD9, 0xDA):  # end of image, or start of scan before any frame header
            raise ImageHeaderError(f"{what}: JPEG without a frame header (SOF) before its image data")
        if i + 2 > n:
            break
        (length,) = struct.unpack(">H", b[i:i + 2].tobytes())
        if length < 2:
            raise ImageHeaderError(f"{what}: JPEG segment 0x{marker:02x} has length {length} (corrupt header)")
        if marker in _SOF:
            if i + 7 > n:
                break
            h, w = struct.unpack(">HH", b[i + 3:i + 7].tobytes())
            if h == 0:
                raise ImageHeaderError(f"{what}: JPEG height given later in the stream (DNL) is not supported")
            return w, h
        i += length
    raise ImageHeaderError(f"{what}: JPEG header truncated before its frame size")


def check_encoded(data, max_pixels: int = DEFAULT_MAX_PIXELS, what: str = "image",
                  require_known: bool = True) -> tuple[str, int, int] | None:
    """Refuse encoded bytes whose header claims 0 or more than ``max_pixels`` pixels, before decoding.
    ``require_known``: bytes that are not PNG or JPEG (or BMP) are an error too (camera messages); otherwise they
    pass unmeasured (None) and the decoder's own limits apply."""
    size = image_size(data, what)
    if size is None:
        if require_known:
            head = _as_uint8(data)[:4].tobytes()
            raise ImageHeaderError(f"{what}: bytes are neither PNG nor JPEG (they begin {head!r})")
        return None
    fmt, w, h = size
    if w <= 0 or h <= 0:
        raise ImageHeaderError(f"{what}: {fmt} header claims an empty image ({w} x {h})")
    if w * h > max_pixels:
        raise ImageHeaderError(f"{what}: {fmt} header claims {w} x {h} = {w * h:,} pixels, over the limit of "
                               f"{max_pixels:,} (raise it with --max-pixels / max_pixels if the camera is real)")
    return size
