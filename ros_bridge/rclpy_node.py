"""The node on ROS 2 itself (rclpy), for robots with a ROS 2 installation: ``ros2 run cobra_edge_ros
camera_node --ros-args -p model:=/path/artifact -p topics:=/cam0/image_raw`` or the launch file in
``ros_bridge/ros2/launch``. rclpy is imported here only, when this runs; everything beneath (CameraNode,
conversion, scheduling) is the same code the dds and bag transports run and test.

Parameters: model (artifact dir), topics (comma-separated), prompt, answers (comma-separated answer set, empty:
decode), max_new_tokens, max_age_ms (0: off), min_interval_ms (0: off), backend, threads (0: default), precision (fp32,
fp16, int8), max_pixels (larger images refused; default 8192 x 4320), on_nonfinite (reset, fail).
Camera subscriptions use the sensor-data QoS (best effort, keep last 1); outputs the default QoS (reliable, 10).
"""

from __future__ import annotations

import threading

from edge.argtypes import DEFAULT_PROMPT
from edge.imageheader import DEFAULT_MAX_PIXELS

from .messages import COMPRESSED_TYPE, IMAGE_TYPE
from .transport import Handler, deliver


class RclpyTransport:
    live = True

    def __init__(self, node):
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image
        from std_msgs.msg import String

        self.node = node
        self._string = String
        self._image_types = {IMAGE_TYPE: Image, COMPRESSED_TYPE: CompressedImage}
        self._sensor_qos = qos_profile_sensor_data
        self._publishers = {}
        self._subscriptions = []

    def advertise(self, topic: str) -> None:
        if topic not in self._publishers:
            self._publishers[topic] = self.node.create_publisher(self._string, topic, 10)

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

    def publish(self, topic: str, text: str) -> None:
        self.advertise(topic)
        msg = self._string()
        msg.data = text
        self._publishers[topic].publish(msg)

    def close(self) -> int:
        self.node.destroy_node()
        return 0


PARAMETERS = {"model": "", "topics": "", "prompt": DEFAULT_PROMPT, "answers": "", "max_new_tokens": 16,
              "max_age_ms": 0.0, "min_interval_ms": 0.0, "backend": "onnxruntime", "threads": 0,
              "precision": "fp32", "max_pixels": DEFAULT_MAX_PIXELS, "on_nonfinite": "reset"}


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
    config = NodeConfig([t for t in p["topics"].split(",") if t.strip()], p["prompt"],
                        [a for a in p["answers"].split(",") if a.strip()] or None, int(p["max_new_tokens"]),
                        p["max_age_ms"] or None, p["min_interval_ms"] or None, max_pixels=int(p["max_pixels"]),
                        on_nonfinite=p["on_nonfinite"])
    camera = CameraNode.from_artifact(p["model"], RclpyTransport(node), config, p["backend"], p["threads"] or None,
                                      p["precision"])
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
