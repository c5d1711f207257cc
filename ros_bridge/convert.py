"""Camera messages -> the uint8 BGR [H, W, 3] frames the runtime takes (OpenCV's layout).

sensor_msgs/Image: rgb8, bgr8, rgba8, bgra8, mono8 (and their OpenCV aliases 8UC1 = mono8, 8UC3 = bgr8), rows
of ``step`` bytes (padding after ``width * channels`` is skipped, not copied). sensor_msgs/CompressedImage: jpeg
and png, decoded by OpenCV after their header's size is checked against a pixel limit (``max_pixels``, default
``edge.imageheader.DEFAULT_MAX_PIXELS``: every 8K camera), so a small message claiming a huge image is refused
before it is decoded. Anything else raises ConversionError naming the topic and the problem: conversion never
raises another exception type for a message, whatever its bytes.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge.errors import CobraEdgeError
from edge.imageheader import DEFAULT_MAX_PIXELS, ImageHeaderError, check_encoded

from .cdr import CdrError, parse_compressed, parse_image
from .messages import COMPRESSED_TYPE, IMAGE_TYPE, CompressedImageMsg, ImageMsg, SerializedMsg, from_ros

# encoding -> (channels, OpenCV conversion to BGR or None when the bytes are already BGR)
ENCODINGS = {
    "rgb8": (3, cv2.COLOR_RGB2BGR),
    "bgr8": (3, None),
    "rgba8": (4, cv2.COLOR_RGBA2BGR),
    "bgra8": (4, cv2.COLOR_BGRA2BGR),
    "mono8": (1, cv2.COLOR_GRAY2BGR),
    "8UC1": (1, cv2.COLOR_GRAY2BGR),
    "8UC3": (3, None),
}
COMPRESSED_FORMATS = ("jpeg", "jpg", "png")


class ConversionError(CobraEdgeError, ValueError):
    """A camera message that cannot become a frame (unknown encoding, sizes that disagree, undecodable bytes)."""


def as_message(msg, topic: str = "?") -> ImageMsg | CompressedImageMsg:
    """Whatever a transport delivered (our values, CDR off the wire, rclpy or rosbags objects) -> our value."""
    if isinstance(msg, (ImageMsg, CompressedImageMsg)):
        return msg
    if isinstance(msg, SerializedMsg):
        parse = {IMAGE_TYPE: parse_image, COMPRESSED_TYPE: parse_compressed}.get(msg.type)
        if parse is None:
            raise ConversionError(f"topic {topic!r}: cannot take messages of type {msg.type!r}")
        try:
            return parse(msg.data, f"topic {topic!r} ({msg.type})")
        except CdrError as e:
            raise ConversionError(str(e)) from e
    try:
        return from_ros(msg)
    except (AttributeError, TypeError, ValueError) as e:
        raise ConversionError(f"topic {topic!r}: not a camera message ({type(msg).__name__}: {e})") from e


def to_bgr(msg: ImageMsg | CompressedImageMsg, topic: str = "?", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A camera message -> uint8 BGR [H, W, 3], contiguous (a new array; the message buffer is not kept).
    Images of more than ``max_pixels`` pixels are refused (compressed ones before decoding)."""
    try:
        if isinstance(msg, CompressedImageMsg):
            return _decode_compressed(msg, topic, max_pixels)
        if isinstance(msg, ImageMsg):
            return _image_to_bgr(msg, topic, max_pixels)
    except cv2.error as e:  # OpenCV's own limits and asserts: still this message's problem only
        raise ConversionError(f"topic {topic!r}: OpenCV could not convert the image: {str(e).strip()[-200:]}") from None
    raise ConversionError(f"topic {topic!r}: expected an Image or CompressedImage, got {type(msg).__name__}")


def to_rgb(msg: ImageMsg | CompressedImageMsg, topic: str = "?", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A camera message -> uint8 RGB [H, W, 3]."""
    return cv2.cvtColor(to_bgr(msg, topic, max_pixels), cv2.COLOR_BGR2RGB)


def pixel_rows(msg: ImageMsg, topic: str = "?", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """The pixels of an Image as a view [height, width, channels] (padding bytes of each row skipped)."""
    where = f"topic {topic!r}"
    if msg.encoding not in ENCODINGS:
        raise ConversionError(f"{where}: unsupported image encoding {msg.encoding!r} "
                              f"(supported: {', '.join(ENCODINGS)})")
    channels = ENCODINGS[msg.encoding][0]
    h, w, step = msg.height, msg.width, msg.step
    if h <= 0 or w <= 0:
        raise ConversionError(f"{where}: empty image {w}x{h}")
    if w * h > max_pixels:
        raise ConversionError(f"{where}: image {w} x {h} = {w * h:,} pixels is over the limit of {max_pixels:,}")
    if step < w * channels:
        raise ConversionError(f"{where}: step {step} is shorter than a row ({w} px x {channels} bytes, "
                              f"{msg.encoding})")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size != step * h:
        raise ConversionError(f"{where}: {msg.encoding} {w}x{h} with step {step} needs {step * h} bytes, "
                              f"got {data.size}")
    rows = data.reshape(h, step)[:, :w * channels]
    return rows.reshape(h, w, channels)


def _image_to_bgr(msg: ImageMsg, topic: str, max_pixels: int) -> np.ndarray:
    pixels = pixel_rows(msg, topic, max_pixels)
    code = ENCODINGS[msg.encoding][1]
    if code is None:
        return pixels.copy(order="C")  # never a view into the message buffer
    if pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    return cv2.cvtColor(np.ascontiguousarray(pixels), code)


def _decode_compressed(msg: CompressedImageMsg, topic: str, max_pixels: int) -> np.ndarray:
    where = f"topic {topic!r}"
    fmt = msg.format.lower()
    if "compresseddepth" in fmt or not any(f in fmt for f in COMPRESSED_FORMATS):  # depth: a header, then 16-bit
        raise ConversionError(f"{where}: unsupported CompressedImage format {msg.format!r} (supported: jpeg, png)")
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if not data.size:
        raise ConversionError(f"{where}: empty CompressedImage ({msg.format!r})")
    try:
        check_encoded(data, max_pixels, f"{where} ({msg.format!r}, {data.size} bytes)")
    except ImageHeaderError as e:
        raise ConversionError(str(e)) from None
    frame = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if frame is None:
        raise ConversionError(f"{where}: could not decode {data.size} bytes as {msg.format!r}")
    return frame
