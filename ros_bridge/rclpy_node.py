"""The node on ROS 2 itself (rclpy), for robots with a ROS 2 installation: ``ros2 run cobra_edge_ros
camera_node --ros-args -p model:=/path/artifact -p topics:=/cam0/image_raw`` or the launch file in
``ros_bridge/ros2/launch``. rclpy is imported here only, when this runs; everything beneath (CameraNode,
conversion, scheduling) is the same code the dds and bag transports run and test.

Parameters: model (artifact dir), topics (comma-separated), prompt, answers (comma-separated answer set, empty:
decode), max_new_tokens, max_age_ms (0: off), min_interval_ms (0: off), backend, threads (0: default), precision (fp32,
fp16, int8), max_pixels (larger images refused; default 8192 x 4320), on_nonfinite (reset, fail); for artifacts with
action heads: act (true: heads only, no text), twist (topic, empty: off), twist_map (as --twist-map, terms separated
by commas or spaces), twist_source (empty: the first topic), max_linear (m/s), max_angular (rad/s), deadline_ms.
Camera subscriptions use the sensor-data QoS (best effort, keep last 1); outputs the default QoS (reliable, 10):
std_msgs/String answers and records, std_msgs/Float32MultiArray on <topic>/action, geometry_msgs/Twist.

Written in step with the dds transport but NOT run here (rclpy cannot be installed in this environment): the
outputs, the Twist mapping and the watchdog are node.py's and tested over DDS; this file only converts
messages.Float32MultiArrayMsg / TwistMsg into rclpy's std_msgs / geometry_msgs objects (checked by reading, and by
tests/ros_bridge/test_ros2_package.py where rclpy exists).
"""

from __future__ import annotations

import threading

from edge.argtypes import DEFAULT_PROMPT
from edge.imageheader import DEFAULT_MAX_PIXELS

from .messages import (COMPRESSED_TYPE, FLOAT32_ARRAY_TYPE, IMAGE_TYPE, STRING_TYPE, TWIST_TYPE, Float32MultiArrayMsg,
                       TwistMsg, type_of)
from .transport import Handler, deliver
from .twist import DEFAULT_DEADLINE_MS, DEFAULT_MAX_ANGULAR_RADPS, DEFAULT_MAX_LINEAR_MPS, TwistConfig, parse_twist_map


class RclpyTransport:
    live = True

    def __init__(self, node):
        from geometry_msgs.msg import Twist, Vector3
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image
        from std_msgs.msg import Float32MultiArray, MultiArrayDimension, String

        self.node = node
        self._out_types = {STRING_TYPE: String, FLOAT32_ARRAY_TYPE: Float32MultiArray, TWIST_TYPE: Twist}
        self._dimension, self._vector3 = MultiArrayDimension, Vector3
        self._image_types = {IMAGE_TYPE: Image, COMPRESSED_TYPE: CompressedImage}
        self._sensor_qos = qos_profile_sensor_data
        self._publishers = {}  # topic -> (ROS type, publisher)
        self._subscriptions = []

    def advertise(self, topic: str, msg_type: str = STRING_TYPE) -> None:
        if topic not in self._publishers:
            self._publishers[topic] = msg_type, self.node.create_publisher(self._out_types[msg_type], topic, 10)
        elif self._publishers[topic][0] != msg_type:
            raise ValueError(f"topic {topic}: already advertised as {self._publishers[topic][0]}, not {msg_type}")

    def subscribe(self, topic: str, msg_type: str, handler: Handler) -> None:
        self._subscriptions.append(self.node.create_subscription(
            self._image_types[msg_type], topic, lambda msg, t=topic: deliver(handler, t, msg), self._sensor_qos))

    def spin(self, stop: threading.Event) -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        executor = SingleThreadedExecutor()  # its own: the global executor may be spinning in another thread
        executor.add_node(self.node)
        try:
            while not stop.is_set() and rclpy.ok():
                executor.spin_once(timeout_sec=0.1)
        finally:
            executor.remove_node(self.node)

    def publish(self, topic: str, msg) -> None:
        """``msg``: a str (std_msgs/String), messages.Float32MultiArrayMsg or messages.TwistMsg."""
        ty = type_of(msg)
        self.advertise(topic, ty)
        out = self._out_types[ty]()
        if isinstance(msg, str):
            out.data = msg
        elif isinstance(msg, Float32MultiArrayMsg):
            out.layout.dim = [self._dimension(label=d.label, size=d.size, stride=d.stride) for d in msg.dim]
            out.layout.data_offset = msg.data_offset
            out.data = [float(x) for x in msg.data]
        elif isinstance(msg, TwistMsg):
            v = msg.linear, msg.angular
            out.linear = self._vector3(x=float(v[0].x), y=float(v[0].y), z=float(v[0].z))
            out.angular = self._vector3(x=float(v[1].x), y=float(v[1].y), z=float(v[1].z))
        self._publishers[topic][1].publish(out)

    def close(self) -> int:
        self.node.destroy_node()
        return 0


PARAMETERS = {"model": "", "topics": "", "prompt": DEFAULT_PROMPT, "answers": "", "max_new_tokens": 16,
              "max_age_ms": 0.0, "min_interval_ms": 0.0, "backend": "onnxruntime", "threads": 0,
              "precision": "fp32", "max_pixels": DEFAULT_MAX_PIXELS, "on_nonfinite": "reset",
              "act": False, "twist": "", "twist_map": "", "twist_source": "", "max_linear": DEFAULT_MAX_LINEAR_MPS,
              "max_angular": DEFAULT_MAX_ANGULAR_RADPS, "deadline_ms": DEFAULT_DEADLINE_MS}


def twist_config(p: dict) -> TwistConfig | None:
    """The twist parameters -> TwistConfig (None when ``twist`` is empty); ValueError naming the parameter."""
    if not p["twist"]:
        if p["twist_map"] or p["twist_source"]:
            raise ValueError("parameter twist_map / twist_source set, but twist (the Twist topic) is empty")
        return None
    return TwistConfig(p["twist"], parse_twist_map(p["twist_map"], "twist_map"), p["twist_source"] or None,
                       float(p["max_linear"]), float(p["max_angular"]), float(p["deadline_ms"]))


def main(args=None) -> int:
    import rclpy

    from .node import CameraNode, NodeConfig

    rclpy.init(args=args)
    node = rclpy.create_node("cobra_edge")
    p = {name: node.declare_parameter(name, default).value for name, default in PARAMETERS.items()}
    if not p["model"] or not p["topics"]:
        node.get_logger().error("parameters 'model' (artifact directory) and 'topics' (comma-separated) are required")
        rclpy.try_shutdown()
        return 2
    try:
        config = NodeConfig([t for t in p["topics"].split(",") if t.strip()], p["prompt"],
                            [a for a in p["answers"].split(",") if a.strip()] or None, int(p["max_new_tokens"]),
                            p["max_age_ms"] or None, p["min_interval_ms"] or None, max_pixels=int(p["max_pixels"]),
                            on_nonfinite=p["on_nonfinite"], act=bool(p["act"]), twist=twist_config(p))
        camera = CameraNode.from_artifact(p["model"], RclpyTransport(node), config, p["backend"],
                                          p["threads"] or None, p["precision"])
    except ValueError as e:  # a bad parameter (the twist map, limits), or --act / twist without heads
        node.get_logger().error(str(e))
        rclpy.try_shutdown()
        return 2
    node.get_logger().info(f"answering {', '.join(config.topics)} with {p['model']}")
    stop = threading.Event()
    try:
        camera.run(stop)
    except KeyboardInterrupt:
        stop.set()
    finally:
        rclpy.try_shutdown()
    if camera.failure is not None:
        node.get_logger().fatal(f"the inference worker failed: {camera.failure}")
        return 3
    return 0
