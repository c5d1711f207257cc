"""What a middleware must offer the node: deliver camera messages, publish its outputs.

    transport.advertise("/cam0/image_raw/answer")          # publishers, made up front (default: std_msgs/String)
    transport.advertise("/cam0/image_raw/action", "std_msgs/msg/Float32MultiArray")
    transport.subscribe("/cam0/image_raw", "sensor_msgs/msg/Image", handler)
    transport.spin(stop)       # calls handler(topic, msg, received_time) until stop is set or the source ends
    transport.publish("/cam0/image_raw/answer", text)      # a str is a std_msgs/String
    transport.publish("/cmd_vel", TwistMsg(...))           # messages.Float32MultiArrayMsg, messages.TwistMsg
    transport.close()          # releases the middleware (DDS participant, bag file)

``msg`` is anything ``convert.as_message`` takes; ``received_time`` is ``time.time()`` when it arrived (for a
bag: when it was replayed). ``live`` is False for recorded sources: frames are then fed losslessly.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Protocol

from edge.errors import CobraEdgeError

from .messages import STRING_TYPE

Handler = Callable[[str, object, float], None]
log = logging.getLogger("cobra_edge.ros")


class TransportError(CobraEdgeError, RuntimeError):
    """The middleware refused: a publish failed, a topic is not in the bag, a library is missing."""


def deliver(handler: Handler, topic: str, msg) -> None:
    """Call a subscriber: a handler that raises is logged and the spin goes on (one message never ends it)."""
    try:
        handler(topic, msg, time.time())
    except Exception as e:
        log.error("topic %r: the message handler failed: %s: %s", topic, type(e).__name__, e, exc_info=e)


class Transport(Protocol):
    live: bool

    def advertise(self, topic: str, msg_type: str = STRING_TYPE) -> None: ...

    def subscribe(self, topic: str, msg_type: str, handler: Handler) -> None: ...

    def spin(self, stop: threading.Event) -> None: ...

    def publish(self, topic: str, msg) -> None: ...

    def close(self) -> None: ...


def check_topic(topic: str) -> str:
    """A ROS 2 topic name, made absolute: ``cam0/image_raw`` -> ``/cam0/image_raw``."""
    name = topic.strip()
    if not name or name == "/" or any(c.isspace() for c in name) or "//" in name:
        raise ValueError(f"invalid ROS topic name {topic!r}")
    name = "/" + name.strip("/")
    if not all(c.isalnum() or c in "/_~{}" for c in name):
        raise ValueError(f"invalid ROS topic name {topic!r}: only letters, digits, '_' and '/' are allowed")
    return name
