"""What the node publishes during a bag replay, recorded into a ROS 2 bag (``--out-bag DIR``: MCAP, rosbags'
Writer, the ROS 2 Humble message definitions), so ``ros2 bag play`` / ``ros2 bag info`` / Foxglove read it as if the
node had run live: std_msgs/String on ``<topic>/answer``, ``/latency``, ``/error``; std_msgs/Float32MultiArray on
``<topic>/action``; geometry_msgs/Twist on the ``--twist`` topic.

Log time of each message: the wall clock when the node published it (``time.time_ns()``), so at the recorded pace
(no ``--max-speed``) the output keeps the input's rhythm plus the model's latency; the source frame's header stamp
is in the JSON of ``<topic>/answer`` and ``<topic>/latency``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .messages import FLOAT32_ARRAY_TYPE, STRING_TYPE, TWIST_TYPE, Float32MultiArrayMsg, TwistMsg, type_of
from .transport import TransportError


def _typestore():
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_HUMBLE)


def to_rosbags(msg, typestore):
    """An outgoing value (``str``, Float32MultiArrayMsg, TwistMsg) -> the rosbags message of its ROS type."""
    ty = type_of(msg)
    types = typestore.types
    if ty == STRING_TYPE:
        return types[STRING_TYPE](data=msg)
    if isinstance(msg, Float32MultiArrayMsg):
        dims = [types["std_msgs/msg/MultiArrayDimension"](label=d.label, size=d.size, stride=d.stride) for d in msg.dim]
        layout = types["std_msgs/msg/MultiArrayLayout"](dim=dims, data_offset=msg.data_offset)
        return types[FLOAT32_ARRAY_TYPE](layout=layout, data=np.asarray(msg.data, np.float32))
    if isinstance(msg, TwistMsg):
        vec = types["geometry_msgs/msg/Vector3"]
        return types[TWIST_TYPE](linear=vec(x=msg.linear.x, y=msg.linear.y, z=msg.linear.z),
                                 angular=vec(x=msg.angular.x, y=msg.angular.y, z=msg.angular.z))
    raise TypeError(f"no rosbags type for {ty}")  # unreachable: type_of refused it


class BagRecorder:
    """An output bag at ``path`` (a new directory); ``write`` from any one thread at a time (the caller locks)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists():
            raise TransportError(f"--out-bag {self.path}: already exists; give a new directory for the output bag")
        if not self.path.parent.is_dir():
            raise TransportError(f"--out-bag {self.path}: folder {self.path.parent} does not exist (create it first)")
        try:
            from rosbags.rosbag2 import StoragePlugin, Writer
        except ImportError as e:
            raise TransportError(f"--out-bag needs rosbags: pip install 'cobra-edge[ros]' ({e})") from e
        self._typestore = _typestore()
        self._writer = Writer(self.path, version=9, storage_plugin=StoragePlugin.MCAP)
        try:
            self._writer.open()
        except Exception as e:  # rosbags' WriterError, or the file system's
            raise TransportError(f"--out-bag {self.path}: cannot be written: {e}") from None
        self._connections: dict = {}
        self.messages = 0

    def write(self, topic: str, msg, log_ns: int | None = None) -> None:
        ty = type_of(msg)
        conn = self._connections.get(topic)
        if conn is None:
            conn = self._connections[topic] = self._writer.add_connection(topic, ty, typestore=self._typestore)
        if conn.msgtype != ty:
            raise TransportError(f"--out-bag: topic {topic} carries {conn.msgtype}; cannot record a {ty} on it")
        data = self._typestore.serialize_cdr(to_rosbags(msg, self._typestore), ty)
        self._writer.write(conn, time.time_ns() if log_ns is None else log_ns, data)
        self.messages += 1

    def close(self) -> None:
        self._writer.close()
