"""The serve API's request checking and frame transport (no Ray, no model)."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from edge.errors import FrameError
from edge.imageheader import ImageHeaderError
from edge.serve.protocol import ApiError, FrameRequest, OpenRequest, encode_frame, error_body


def frame(h=24, w=32):
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt", ["png", "raw"])
def test_lossless_frames_round_trip(fmt):
    f = frame()
    req = FrameRequest.parse("cam0", {**encode_frame(f, fmt), "prompt": "Is the path clear?"})
    np.testing.assert_array_equal(req.decode(), f)
    again = FrameRequest.parse("cam0", req.to_json())  # the client's body parses to the same request
    np.testing.assert_array_equal(again.decode(), f)
    assert again.prompt == req.prompt and again.act is False and again.max_new_tokens == 16


def test_jpeg_frames_decode_close():
    f = np.full((32, 32, 3), 120, np.uint8)
    out = FrameRequest.parse("cam0", {**encode_frame(f, "jpeg"), "prompt": "p"}).decode()
    assert out.shape == f.shape and np.abs(out.astype(int) - f).max() <= 3


@pytest.mark.parametrize("body, words", [
    ([], "JSON object"),
    ({"prompt": "p"}, "exactly one of 'image'"),
    ({"prompt": "", "image": "aGk="}, "'prompt'"),
    ({"prompt": "p", "image": "not base64!"}, "not valid base64"),
    ({"prompt": "p", "raw": "AAAA", "shape": [2, 2, 3]}, "holds 3 bytes"),
    ({"prompt": "p", "raw": "AAAA", "shape": [1, 1]}, "[H, W, 3]"),
    ({"prompt": "p", "image": "aGk=", "answers": []}, "'answers'"),
    ({"prompt": "p", "image": "aGk=", "answers": ["yes"], "act": True}, "exclude each other"),
    ({"prompt": "p", "image": "aGk=", "act": "yes"}, "'act'"),
    ({"prompt": "p", "image": "aGk=", "max_new_tokens": 10_000}, "'max_new_tokens'"),
    ({"prompt": "p", "image": "aGk=", "capture_time": "now"}, "'capture_time'"),
    ({"prompt": "p", "image": "aGk=", "max_age_ms": -1}, "'max_age_ms'"),
    ({"prompt": "p", "image": "aGk=", "colour": "red"}, "unknown field"),
])
def test_malformed_frame_requests_are_400_naming_the_stream(body, words):
    with pytest.raises(ApiError) as e:
        FrameRequest.parse("cam7", body)
    assert e.value.status == 400 and words in str(e.value)
    assert e.value.stream == "cam7" and ("cam7" in str(e.value) or words == "JSON object")


@pytest.mark.parametrize("body, words", [
    ({"stream": ""}, "non-empty"), ({"stream": "a/b"}, "without '/'"), ({"stream": 3}, "non-empty"),
    ({"stream": "cam0", "mode": "video"}, "unknown mode"), ({"stream": "cam0", "x": 1}, "unknown field"),
    ("cam0", "JSON object"),
])
def test_malformed_open_requests_are_400(body, words):
    with pytest.raises(ApiError) as e:
        OpenRequest.parse(body)
    assert e.value.status == 400 and words in str(e.value)


def test_bad_pixels_are_frame_errors_with_their_status():
    bad = FrameRequest.parse("cam1", {"prompt": "p", "image": base64.b64encode(b"hello").decode()})
    with pytest.raises(FrameError, match="cam1.*neither PNG nor JPEG") as e:
        bad.decode()
    assert error_body(e.value, "cam1")[0] == 422
    big = FrameRequest.parse("cam1", {**encode_frame(frame(64, 64)), "prompt": "p"})
    with pytest.raises(ImageHeaderError, match="over the limit") as e:
        big.decode(max_pixels=100)
    assert error_body(e.value, "cam1")[0] == 413
    raw = FrameRequest.parse("cam1", {**encode_frame(frame(64, 64), "raw"), "prompt": "p"})
    with pytest.raises(ImageHeaderError, match="over the limit"):
        raw.decode(max_pixels=100)
    corrupt = encode_frame(frame())
    data = base64.b64decode(corrupt["image"])
    corrupt["image"] = base64.b64encode(data[:40] + bytes(len(data) - 40)).decode()
    with pytest.raises(FrameError, match="cam1"):
        FrameRequest.parse("cam1", {**corrupt, "prompt": "p"}).decode()


def test_several_frames_in_one_request_fail_item_by_item():
    from edge.serve.protocol import parse_frames

    good = {"stream": "cam0", **encode_frame(frame()), "prompt": "p"}
    out = parse_frames({"frames": [good, {"stream": "cam1", "prompt": "p"}, {"prompt": "p"}, 3,
                                   {**good, "stream": "a/b"}]})
    assert isinstance(out[0], FrameRequest) and out[0].stream == "cam0"
    assert [type(o) for o in out[1:]] == [ApiError] * 4
    assert "cam1" in str(out[1]) and "frames[2]" in str(out[2]) and "frames[3]" in str(out[3])
    for bad in ({"frames": []}, {"frames": [good] * 257}, {"frames": good}, {"frames": [good], "x": 1}, []):
        with pytest.raises(ApiError, match="1..256"):
            parse_frames(bad)
