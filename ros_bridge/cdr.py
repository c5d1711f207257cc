"""The ROS 2 wire format of camera messages: CDR (XCDR1), as rmw implementations put it on DDS.

A serialized sample starts with a 4-byte encapsulation header: ``00 00`` big-endian CDR, ``00 01`` little-endian
CDR, then two option bytes. Fields follow in declaration order, each aligned to its size relative to the end of
that header; strings are uint32 length (NUL included) + bytes; ``uint8[]`` is uint32 count + bytes.

Only what the node reads (Image, CompressedImage) is parsed here, with no copy of the pixel data. What it
writes (std_msgs/String) is serialized by the DDS library from ``dds_types``.
"""

from __future__ import annotations

import struct

from edge.errors import CobraEdgeError

from .messages import CompressedImageMsg, Header, ImageMsg, Stamp

ENCAPSULATIONS = {b"\x00\x00": ">", b"\x00\x01": "<"}  # CDR_BE, CDR_LE (XCDR1, what ROS 2 uses)


class CdrError(CobraEdgeError, ValueError):
    """A sample that is not the CDR of the message type it was received as."""


class _Reader:
    def __init__(self, buf, what: str):
        self.buf = memoryview(buf).cast("B")
        self.what = what
        if len(self.buf) < 4:
            raise CdrError(f"{what}: {len(self.buf)} bytes is shorter than the 4-byte CDR header")
        order = ENCAPSULATIONS.get(bytes(self.buf[:2]))
        if order is None:
            raise CdrError(f"{what}: encapsulation {bytes(self.buf[:2]).hex()} is not plain CDR (0000 or 0001); "
                           f"XCDR2 samples are not what ROS 2 sends")
        self.u32 = struct.Struct(order + "I")
        self.i32 = struct.Struct(order + "i")
        self.pos = 4

    def _take(self, n: int, align: int = 1) -> memoryview:
        self.pos += (-(self.pos - 4)) % align
        end = self.pos + n
        if end > len(self.buf):
            raise CdrError(f"{self.what}: truncated sample ({len(self.buf)} bytes, needed {end})")
        out = self.buf[self.pos:end]
        self.pos = end
        return out

    def uint32(self) -> int:
        return self.u32.unpack(self._take(4, 4))[0]

    def int32(self) -> int:
        return self.i32.unpack(self._take(4, 4))[0]

    def uint8(self) -> int:
        return self._take(1)[0]

    def string(self) -> str:
        n = self.uint32()
        raw = self._take(n)
        if n == 0 or raw[-1] != 0:
            raise CdrError(f"{self.what}: malformed string (length {n}, not NUL-terminated)")
        return bytes(raw[:-1]).decode("utf-8", errors="replace")

    def octets(self) -> memoryview:
        return self._take(self.uint32())

    def header(self) -> Header:
        sec, nanosec = self.int32(), self.uint32()
        return Header(Stamp(sec, nanosec), self.string())


def parse_image(buf, what: str = "sensor_msgs/Image") -> ImageMsg:
    """CDR bytes (with encapsulation header) -> ImageMsg; ``data`` is a view into ``buf``."""
    r = _Reader(buf, what)
    header = r.header()
    height, width = r.uint32(), r.uint32()
    encoding = r.string()
    is_bigendian = r.uint8()
    step = r.uint32()
    return ImageMsg(header, height, width, encoding, is_bigendian, step, r.octets())


def parse_compressed(buf, what: str = "sensor_msgs/CompressedImage") -> CompressedImageMsg:
    """CDR bytes (with encapsulation header) -> CompressedImageMsg; ``data`` is a view into ``buf``."""
    r = _Reader(buf, what)
    header = r.header()
    fmt = r.string()
    return CompressedImageMsg(header, fmt, r.octets())
