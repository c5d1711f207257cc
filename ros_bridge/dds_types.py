"""ROS 2 message types as Cyclone DDS sees them: the names rmw implementations register
(``<package>::msg::dds_::<Type>_``) and the field layout of the .msg files, for topic creation and type
matching. Camera samples are not unpacked field by field in Python: ``deserialize`` hands the raw CDR to the
node (``SerializedMsg``), which parses it with ``cdr`` under its per-topic error handling, without copying pixels.
What the node publishes (String, Float32MultiArray, Twist) is built from ``messages``' values by ``to_idl`` and
serialized by the DDS library (byte for byte what rosbags writes for the same message: tests/ros_bridge/test_actions.py).
"""


from dataclasses import dataclass

import cyclonedds.idl.types as t
from cyclonedds.idl import IdlStruct

from .messages import (COMPRESSED_TYPE, FLOAT32_ARRAY_TYPE, IMAGE_TYPE, STRING_TYPE, TWIST_TYPE,
                       Float32MultiArrayMsg, SerializedMsg, TwistMsg, Vector3, type_of)


@dataclass
class Time_(IdlStruct, typename="builtin_interfaces::msg::dds_::Time_"):
    sec: t.int32
    nanosec: t.uint32


@dataclass
class Header_(IdlStruct, typename="std_msgs::msg::dds_::Header_"):
    stamp: Time_
    frame_id: str


@dataclass
class Image_(IdlStruct, typename="sensor_msgs::msg::dds_::Image_"):
    header: Header_
    height: t.uint32
    width: t.uint32
    encoding: str
    is_bigendian: t.uint8
    step: t.uint32
    data: t.sequence[t.uint8]

    @classmethod
    def deserialize(cls, data, has_header: bool = True, use_version_2=None):
        return SerializedMsg(IMAGE_TYPE, data)


@dataclass
class CompressedImage_(IdlStruct, typename="sensor_msgs::msg::dds_::CompressedImage_"):
    header: Header_
    format: str
    data: t.sequence[t.uint8]

    @classmethod
    def deserialize(cls, data, has_header: bool = True, use_version_2=None):
        return SerializedMsg(COMPRESSED_TYPE, data)


@dataclass
class String_(IdlStruct, typename="std_msgs::msg::dds_::String_"):
    data: str


@dataclass
class MultiArrayDimension_(IdlStruct, typename="std_msgs::msg::dds_::MultiArrayDimension_"):
    label: str
    size: t.uint32
    stride: t.uint32


@dataclass
class MultiArrayLayout_(IdlStruct, typename="std_msgs::msg::dds_::MultiArrayLayout_"):
    dim: t.sequence[MultiArrayDimension_]
    data_offset: t.uint32


@dataclass
class Float32MultiArray_(IdlStruct, typename="std_msgs::msg::dds_::Float32MultiArray_"):
    layout: MultiArrayLayout_
    data: t.sequence[t.float32]


@dataclass
class Vector3_(IdlStruct, typename="geometry_msgs::msg::dds_::Vector3_"):
    x: t.float64
    y: t.float64
    z: t.float64


@dataclass
class Twist_(IdlStruct, typename="geometry_msgs::msg::dds_::Twist_"):
    linear: Vector3_
    angular: Vector3_


OUTPUT_IDL = {STRING_TYPE: String_, FLOAT32_ARRAY_TYPE: Float32MultiArray_, TWIST_TYPE: Twist_}


def _vector(v: Vector3) -> Vector3_:
    return Vector3_(float(v.x), float(v.y), float(v.z))


def to_idl(msg):
    """An outgoing value (``str``, Float32MultiArrayMsg, TwistMsg) -> its IDL sample."""
    ty = type_of(msg)
    if ty == STRING_TYPE:
        return String_(data=msg)
    if isinstance(msg, Float32MultiArrayMsg):
        dims = [MultiArrayDimension_(d.label, d.size, d.stride) for d in msg.dim]
        return Float32MultiArray_(MultiArrayLayout_(dims, msg.data_offset), [float(x) for x in msg.data])
    if isinstance(msg, TwistMsg):
        return Twist_(_vector(msg.linear), _vector(msg.angular))
    raise TypeError(f"no IDL type for {ty}")  # unreachable: type_of refused it
