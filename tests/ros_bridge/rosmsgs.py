"""Camera messages built and serialized by ``rosbags`` (an implementation independent of ours), and bags."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

rosbags = pytest.importorskip("rosbags", reason="ROS 2 bridge tests need rosbags (the 'ros' / 'test' extra)")
from rosbags.rosbag2 import StoragePlugin, Writer  # noqa: E402
from rosbags.typesys import Stores, get_typestore  # noqa: E402

TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
Image = TYPESTORE.types["sensor_msgs/msg/Image"]
CompressedImage = TYPESTORE.types["sensor_msgs/msg/CompressedImage"]
Header = TYPESTORE.types["std_msgs/msg/Header"]
Time = TYPESTORE.types["builtin_interfaces/msg/Time"]

# encoding -> (OpenCV conversion from BGR, channels)
FROM_BGR = {"rgb8": (cv2.COLOR_BGR2RGB, 3), "bgr8": (None, 3), "rgba8": (cv2.COLOR_BGR2RGBA, 4),
            "bgra8": (cv2.COLOR_BGR2BGRA, 4), "mono8": (cv2.COLOR_BGR2GRAY, 1)}


def header(sec: int, nanosec: int = 0, frame_id: str = "camera") -> object:
    return Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id=frame_id)


def image_msg(bgr: np.ndarray, encoding: str, sec: int = 1, nanosec: int = 0, pad: int = 0, frame_id: str = "camera"):
    """A sensor_msgs/Image of ``bgr`` in ``encoding``, each row followed by ``pad`` bytes of 0xAB."""
    code, ch = FROM_BGR[encoding]
    pixels = bgr if code is None else cv2.cvtColor(bgr, code)
    h, w = bgr.shape[:2]
    rows = np.full((h, w * ch + pad), 0xAB, np.uint8)
    rows[:, :w * ch] = pixels.reshape(h, w * ch)
    return Image(header=header(sec, nanosec, frame_id), height=h, width=w, encoding=encoding, is_bigendian=0,
                 step=w * ch + pad, data=rows.reshape(-1))


def compressed_msg(bgr: np.ndarray, fmt: str = "jpeg", sec: int = 1, nanosec: int = 0, frame_id: str = "camera",
                   data: bytes | None = None):
    if data is None:
        ok, buf = cv2.imencode(".jpg" if fmt == "jpeg" else ".png", bgr)
        assert ok
        data = buf.tobytes()
    return CompressedImage(header=header(sec, nanosec, frame_id), format=fmt,
                           data=np.frombuffer(data, np.uint8).copy())


def cdr(msg, little_endian: bool = True) -> bytes:
    return bytes(TYPESTORE.serialize_cdr(msg, msg.__msgtype__, little_endian=little_endian))


def write_bag(path: Path, storage: str, messages: list[tuple[str, int, object]]) -> Path:
    """messages: (topic, log time ns, rosbags message) -> a ROS 2 bag at ``path`` (storage "mcap" or "sqlite3")."""
    plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {}
        for topic, t_ns, msg in messages:
            if topic not in conns:
                conns[topic] = writer.add_connection(topic, msg.__msgtype__, typestore=TYPESTORE)
            writer.write(conns[topic], t_ns, cdr(msg))
    return path


def scene(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A BGR frame with structure (gradients + a rectangle), so colour-order mistakes show."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y) % 256], -1).astype(np.uint8)
    cv2.rectangle(img, (w // 4, h // 4), (w // 2, h // 2), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    return img
