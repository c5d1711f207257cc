"""The camera messages as plain values, whatever middleware delivered them.

Fields and meanings are those of sensor_msgs/Image and sensor_msgs/CompressedImage (ROS 2): ``step`` is the
row length in bytes (it may exceed ``width * channels``: padded rows), ``data`` holds ``step * height`` bytes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stamp:
    """builtin_interfaces/Time: seconds and nanoseconds (ROS time, usually the camera's wall clock)."""

    sec: int = 0
    nanosec: int = 0

    def to_seconds(self) -> float:
        return self.sec + self.nanosec * 1e-9

    def to_dict(self) -> dict:
        return {"sec": self.sec, "nanosec": self.nanosec}


@dataclass(frozen=True)
class Header:
    """std_msgs/Header."""

    stamp: Stamp = Stamp()
    frame_id: str = ""


@dataclass(frozen=True)
class ImageMsg:
    """sensor_msgs/Image."""

    header: Header
    height: int
    width: int
    encoding: str
    is_bigendian: int
    step: int
    data: bytes | memoryview


@dataclass(frozen=True)
class CompressedImageMsg:
    """sensor_msgs/CompressedImage: ``format`` as image_transport writes it ("jpeg", "png",
    "bgr8; jpeg compressed bgr8", ...)."""

    header: Header
    format: str
    data: bytes | memoryview


@dataclass
class SerializedMsg:
    """A sample as it came off the wire: ROS type name (``sensor_msgs/msg/Image``) and its CDR bytes
    (mutable: the DDS library attaches ``sample_info``)."""

    type: str
    data: bytes | memoryview


IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
STRING_TYPE = "std_msgs/msg/String"


def type_for_topic(topic: str) -> str:
    """image_transport's naming: ``.../compressed`` carries CompressedImage, anything else Image."""
    return COMPRESSED_TYPE if topic.rstrip("/").endswith("/compressed") else IMAGE_TYPE


def from_ros(msg) -> ImageMsg | CompressedImageMsg:
    """A ROS message object (rclpy's, or rosbags') -> our value. Anything with ``format`` is a CompressedImage."""
    h = msg.header
    header = Header(Stamp(int(h.stamp.sec), int(h.stamp.nanosec)), str(h.frame_id))
    if hasattr(msg, "format"):
        return CompressedImageMsg(header, str(msg.format), _as_bytes(msg.data))
    return ImageMsg(header, int(msg.height), int(msg.width), str(msg.encoding), int(msg.is_bigendian),
                    int(msg.step), _as_bytes(msg.data))


def _as_bytes(data) -> bytes | memoryview:
    """uint8 data as a buffer without copying when possible (numpy arrays, array.array, bytes)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return data
    try:
        return memoryview(data).cast("B")
    except TypeError:
        return bytes(data)  # a list of ints (rclpy with some type supports)
