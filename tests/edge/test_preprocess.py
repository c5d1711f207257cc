import cv2
import numpy as np
import pytest

from edge.errors import FrameError
from edge.preprocess import preprocess


def test_bgr_to_rgb_and_size():
    frame = np.zeros((240, 320, 3), np.uint8)
    frame[..., 0] = 200  # blue in BGR
    out = preprocess(frame, 112)
    assert out.shape == (112, 112, 3) and out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    assert (out[..., 2] == 200).all() and (out[..., 0] == 0).all()


def test_matches_opencv_reference():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)
    want = cv2.cvtColor(cv2.resize(frame, (112, 112), interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(preprocess(frame, 112), want)  # upscaling: cubic
    big = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    want = cv2.cvtColor(cv2.resize(big, (112, 112), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(preprocess(big, 112), want)  # shrinking: area


@pytest.mark.parametrize("frame, message", [
    (None, "frame is None"),
    ("pixels", "must be a numpy array"),
    (np.zeros((0, 10, 3), np.uint8), "empty"),
    (np.zeros((10, 10, 3), np.float32), "must be uint8, got float32"),
    (np.zeros((10, 10, 4), np.uint8), r"\[H, W, 3\] BGR, got shape \[10, 10, 4\]"),
    (np.zeros((10, 10), np.uint8), r"got shape \[10, 10\]"),
])
def test_bad_frames_name_the_stream(frame, message):
    with pytest.raises(FrameError, match=message) as e:
        preprocess(frame, 112, stream="cam7")
    assert "stream 'cam7'" in str(e.value)
