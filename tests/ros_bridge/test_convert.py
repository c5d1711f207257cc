"""Camera messages -> frames: every encoding, padded rows, both byte orders and compressed formats give the same
RGB array as OpenCV's own conversion of the source image; bad messages are errors that name the topic."""

import cv2
import numpy as np
import pytest

from tests.faults import png_claiming

from .rosmsgs import FROM_BGR, cdr, compressed_msg, image_msg, scene  # skips without rosbags

from ros_bridge.cdr import parse_image
from ros_bridge.convert import ConversionError, as_message, to_bgr, to_rgb
from ros_bridge.messages import COMPRESSED_TYPE, IMAGE_TYPE, ImageMsg, SerializedMsg


def reference_rgb(bgr: np.ndarray, encoding: str) -> np.ndarray:
    """What the camera saw, as OpenCV would show it in RGB (mono8 carries only the grey levels)."""
    if encoding == "mono8":
        return cv2.cvtColor(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


@pytest.mark.parametrize("little_endian", [True, False], ids=["cdr-le", "cdr-be"])
@pytest.mark.parametrize("pad", [0, 5])
@pytest.mark.parametrize("encoding", sorted(FROM_BGR))
def test_image_encodings_match_opencv(encoding, pad, little_endian):
    bgr = scene(37, 53)  # odd sizes: no accidental alignment
    msg = image_msg(bgr, encoding, sec=12, nanosec=345, pad=pad, frame_id="cam_left")
    wire = SerializedMsg(IMAGE_TYPE, cdr(msg, little_endian))
    parsed = as_message(wire, "/cam0/image_raw")
    assert parsed.header.stamp.sec == 12 and parsed.header.stamp.nanosec == 345
    assert parsed.header.frame_id == "cam_left" and parsed.step == msg.step
    rgb = to_rgb(parsed, "/cam0/image_raw")
    assert rgb.shape == (37, 53, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb, reference_rgb(bgr, encoding))
    # the rosbags/rclpy object itself (no CDR) converts the same
    np.testing.assert_array_equal(to_rgb(as_message(msg)), rgb)


def test_frames_do_not_alias_the_message_buffer():
    bgr = scene()
    buf = bytearray(cdr(image_msg(bgr, "bgr8")))
    frame = to_bgr(parse_image(buf))
    buf[-10:] = b"\x00" * 10
    np.testing.assert_array_equal(frame, bgr)


def test_png_is_lossless_and_jpeg_matches_opencv_decoder():
    bgr = scene(40, 60, seed=3)
    png = as_message(SerializedMsg(COMPRESSED_TYPE, cdr(compressed_msg(bgr, "png"))), "/c/compressed")
    np.testing.assert_array_equal(to_rgb(png), cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    jmsg = compressed_msg(bgr, "rgb8; jpeg compressed bgr8")  # image_transport's format string
    jpeg = as_message(SerializedMsg(COMPRESSED_TYPE, cdr(jmsg)), "/c/compressed")
    expected = cv2.cvtColor(cv2.imdecode(np.asarray(jmsg.data), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(to_rgb(jpeg), expected)
    assert np.abs(to_rgb(jpeg).astype(int) - cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)).mean() < 8  # and it is the scene


def _image(**over) -> ImageMsg:
    base = as_message(image_msg(scene(4, 5), "rgb8"))
    fields = {k: getattr(base, k) for k in ("header", "height", "width", "encoding", "is_bigendian", "step", "data")}
    return ImageMsg(**{**fields, **over})


@pytest.mark.parametrize("msg, words", [
    (lambda: _image(encoding="yuv422"), ["/front/image_raw", "yuv422", "supported"]),
    (lambda: _image(data=b"\x00" * 10), ["/front/image_raw", "needs 60 bytes", "got 10"]),
    (lambda: _image(step=7), ["/front/image_raw", "step 7", "shorter than a row"]),
    (lambda: _image(width=0), ["/front/image_raw", "empty"]),
    (lambda: as_message(compressed_msg(scene(), "jpeg", data=b"not a jpeg at all")), ["neither PNG nor JPEG", "jpeg"]),
    (lambda: as_message(compressed_msg(scene(), "jpeg", data=_jpeg_header_only())), ["could not decode", "jpeg"]),
    (lambda: as_message(compressed_msg(scene(), "png", data=png_claiming(100_000, 100_000))),
     ["/front/image_raw", "100000 x 100000", "over the limit"]),
    (lambda: as_message(compressed_msg(scene(), "png", data=b"")), ["empty CompressedImage"]),
    (lambda: as_message(compressed_msg(scene(), "compressedDepth png")), ["compressedDepth"]),
])
def test_bad_messages_are_errors_naming_the_topic(msg, words):
    with pytest.raises(ConversionError) as e:
        to_bgr(msg(), "/front/image_raw")
    print(e.value)
    for w in words:
        assert w in str(e.value)


def test_bad_cdr_is_a_conversion_error():
    raw = cdr(image_msg(scene(), "rgb8"))
    for data, words in [(raw[:40], ["truncated"]), (b"\x00\x07" + raw[2:], ["encapsulation", "0007"]),
                        (raw[:2], ["shorter than"])]:
        with pytest.raises(ConversionError) as e:
            as_message(SerializedMsg(IMAGE_TYPE, data), "/cam/image_raw")
        assert "/cam/image_raw" in str(e.value) and all(w in str(e.value) for w in words), str(e.value)
    with pytest.raises(ConversionError, match="cannot take messages of type"):
        as_message(SerializedMsg("std_msgs/msg/String", raw), "/cam/image_raw")


def _jpeg_header_only() -> bytes:
    """A JPEG whose frame header is intact (16 x 16) and whose data is cut off: OpenCV decodes nothing."""
    ok, buf = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    data = buf.tobytes()
    return data[:data.index(b"\xff\xda")]


def test_pixel_limit_applies_to_raw_and_compressed_images():
    img = scene(40, 50)
    raw = as_message(image_msg(img, "bgr8"))
    ok, png = cv2.imencode(".png", img)
    compressed = as_message(compressed_msg(img, "png", data=png.tobytes()))
    for msg in (raw, compressed):
        assert to_bgr(msg, "/cam", max_pixels=2000).shape == (40, 50, 3)  # 2000 = 40 x 50: at the limit
        with pytest.raises(ConversionError, match=r"/cam.*over the limit of 1,999"):
            to_bgr(msg, "/cam", max_pixels=1999)


def test_opencv_errors_become_conversion_errors(monkeypatch):
    def boom(*_a, **_k):
        raise cv2.error("OpenCV(5.0.0) loadsave.cpp: error: (-215:Assertion failed) pixels <= CV_IO_MAX_IMAGE_PIXELS")

    monkeypatch.setattr(cv2, "imdecode", boom)
    ok, png = cv2.imencode(".png", scene(8, 8))
    with pytest.raises(ConversionError, match=r"topic '/cam': OpenCV could not convert the image: .*CV_IO_MAX"):
        to_bgr(as_message(compressed_msg(scene(8, 8), "png", data=png.tobytes())), "/cam")
