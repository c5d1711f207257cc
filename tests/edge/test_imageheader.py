"""Image sizes from encoded headers, checked before decoding (edge/imageheader.py)."""

import struct

import cv2
import numpy as np
import pytest

from edge.imageheader import DEFAULT_MAX_PIXELS, ImageHeaderError, check_encoded, image_size
from tests.faults import png_claiming


@pytest.mark.parametrize("ext,fmt", [(".png", "png"), (".jpg", "jpeg"), (".bmp", "bmp")])
def test_sizes_of_real_encodings_match_what_opencv_decodes(ext, fmt):
    img = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(ext, img)
    assert ok
    for data in (buf, buf.tobytes(), memoryview(buf.tobytes())):
        assert image_size(data) == (fmt, 53, 37)
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    assert decoded.shape[:2] == (37, 53)


def test_progressive_jpeg_and_segments_before_the_frame_header():
    img = np.zeros((64, 80, 3), np.uint8)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])
    data = buf.tobytes()
    app = b"\xff\xe1" + struct.pack(">H", 2 + 3000) + bytes(3000)  # a large APP1 (EXIF-like) before the SOF
    assert image_size(data[:2] + app + data[2:]) == ("jpeg", 80, 64)


def test_oversized_headers_are_refused_before_decoding():
    bomb = png_claiming(100_000, 100_000)
    assert len(bomb) < 200
    with pytest.raises(cv2.error):  # what reached the node before: OpenCV raises instead of returning None
        cv2.imdecode(np.frombuffer(bomb, np.uint8), cv2.IMREAD_COLOR)
    with pytest.raises(ImageHeaderError, match=r"png header claims 100000 x 100000 = 10,000,000,000 pixels, over the "
                                               r"limit of 35,389,440"):
        check_encoded(bomb, what="camera")
    assert check_encoded(png_claiming(12000, 100), what="x") == ("png", 12000, 100)
    with pytest.raises(ImageHeaderError, match="12000 x 12000"):
        check_encoded(png_claiming(12000, 12000))  # valid, but 0.43 GB decoded: over the 8K default
    assert DEFAULT_MAX_PIXELS >= 7680 * 4320  # every 8K camera fits
    assert check_encoded(png_claiming(8192, 4320)) == ("png", 8192, 4320)


@pytest.mark.parametrize("data,match", [
    (b"\x89PNG\r\n\x1a\n\x00\x00", "PNG without an IHDR"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "JPEG header truncated"),
    (b"\xff\xd8\x00\x00", "JPEG marker expected at byte 2"),
    (b"\xff\xd8\xff\xda\x00\x08", "JPEG without a frame header"),
    (b"GIF89a....", "neither PNG nor JPEG"),
    (b"", "neither PNG nor JPEG"),
    (png_claiming(0, 10), "empty image"),
])
def test_malformed_headers_name_the_problem(data, match):
    with pytest.raises(ImageHeaderError, match=match):
        check_encoded(data, what="topic '/cam0'")


def test_unknown_formats_pass_unmeasured_when_allowed():
    assert check_encoded(b"GIF89a....", require_known=False) is None
