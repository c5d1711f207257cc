"""ROS 2 message types as Cyclone DDS sees them: the names rmw implementations register
(``<package>::msg::dds_::<Type>_``) and the field layout of the .msg files, for topic creation and type
matching. Camera samples are not unpacked field by field in Python: ``deserialize`` hands the raw CDR to the
node (``SerializedMsg``), which parses it with ``cdr`` under its per-topic error handling, without copying pixels.
"""


from dataclasses import dataclass

import cyclonedds.idl.types as t
from cyclonedds.idl import IdlStruct

from .messages import COMPRESSED_TYPE, IMAGE_TYPE, SerializedMsg


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
