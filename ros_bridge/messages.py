"""The node's messages as plain values, whatever middleware delivers or sends them.

In: sensor_msgs/Image and sensor_msgs/CompressedImage (ROS 2): ``step`` is the row length in bytes (it may exceed
``width * channels``: padded rows), ``data`` holds ``step * height`` bytes.
Out: std_msgs/String (a ``str``), std_msgs/Float32MultiArray (``Float32MultiArrayMsg``: the action heads' values,
labelled, see ``Float32MultiArrayMsg.labelled``) and geometry_msgs/Twist (``TwistMsg``); each transport turns these
into its middleware's objects (dds_types, bag_out, rclpy_node).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


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


@dataclass(frozen=True)
class MultiArrayDimension:
    """std_msgs/MultiArrayDimension: ``label`` names the dimension, ``size`` its length, ``stride`` the number of
    elements from one index of it to the next times ``size`` (for the outermost: the array's element count)."""

    label: str
    size: int
    stride: int


@dataclass(frozen=True)
class Float32MultiArrayMsg:
    """std_msgs/Float32MultiArray (``layout.dim``, ``layout.data_offset``, ``data``; float32 on the wire).

    The node's convention for action heads (``labelled``): one dimension whose label lists the value names in order,
    comma-separated (``"bearing,distance"``), size = stride = their count, data_offset 0, ``data[i]`` the value
    named ``labels[i]`` in its head's unit (the manifest's ``heads``: ``cobra-edge inspect``)."""

    dim: tuple[MultiArrayDimension, ...]
    data: tuple[float, ...]
    data_offset: int = 0

    @classmethod
    def labelled(cls, names: list[str] | tuple[str, ...], values: dict[str, float]) -> "Float32MultiArrayMsg":
        """{name: value} -> one labelled dimension in the order of ``names`` (values rounded to float32, as sent)."""
        data = np.asarray([values[n] for n in names], np.float32)
        return cls((MultiArrayDimension(",".join(names), len(names), len(names)),), tuple(float(v) for v in data))

    @property
    def labels(self) -> list[str]:
        """The value names of a labelled array (``labelled``'s convention): dim[0].label split at commas."""
        return self.dim[0].label.split(",") if self.dim and self.dim[0].label else []

    def to_dict(self) -> dict:
        return {"kind": "action", "layout": {"dim": [asdict(d) for d in self.dim], "data_offset": self.data_offset},
                "data": list(self.data)}


@dataclass(frozen=True)
class Vector3:
    """geometry_msgs/Vector3 (float64)."""

    x: float = 0.0
    y: float = 0.0
    z: float = 0.0


@dataclass(frozen=True)
class TwistMsg:
    """geometry_msgs/Twist: ``linear`` in m/s, ``angular`` in rad/s (REP 103: x forward, z up, so angular.z > 0
    turns left)."""

    linear: Vector3 = Vector3()
    angular: Vector3 = Vector3()

    @property
    def is_zero(self) -> bool:
        return not any((*asdict(self.linear).values(), *asdict(self.angular).values()))

    def to_dict(self) -> dict:
        return {"kind": "twist", "linear": asdict(self.linear), "angular": asdict(self.angular)}


IMAGE_TYPE = "sensor_msgs/msg/Image"
COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"
STRING_TYPE = "std_msgs/msg/String"
FLOAT32_ARRAY_TYPE = "std_msgs/msg/Float32MultiArray"
TWIST_TYPE = "geometry_msgs/msg/Twist"
OUTPUT_TYPES = {str: STRING_TYPE, Float32MultiArrayMsg: FLOAT32_ARRAY_TYPE, TwistMsg: TWIST_TYPE}


def type_of(msg) -> str:
    """The ROS type of an outgoing message: ``str`` -> std_msgs/msg/String, and the values above."""
    try:
        return OUTPUT_TYPES[type(msg)]
    except KeyError:
        raise TypeError(f"cannot publish a {type(msg).__name__}: expected str, Float32MultiArrayMsg or TwistMsg") \
            from None


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
