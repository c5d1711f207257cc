"""The ROS 2 side that cannot run here (no rclpy): the ament package is consistent with the code it starts, and
with rclpy installed (a robot), the rclpy transport answers a real ROS 2 topic."""

import re
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from ros_bridge import rclpy_node

PKG = Path(__file__).resolve().parents[2] / "ros_bridge" / "ros2"


def test_ament_package_is_consistent():
    root = ET.parse(PKG / "package.xml").getroot()
    name = root.findtext("name")
    assert name == "cobra_edge_ros" and root.get("format") == "3"
    assert root.find("export/build_type").text == "ament_python"
    deps = {e.text for e in root.findall("exec_depend")}
    assert {"rclpy", "sensor_msgs", "std_msgs", "launch_ros"} <= deps
    setup = (PKG / "setup.py").read_text()
    assert f'PACKAGE = "{name}"' in setup and (PKG / "resource" / name).exists()
    entry = re.search(r'camera_node = \{PACKAGE\}\.(\w+):main', setup).group(1)
    assert "from ros_bridge.rclpy_node import main" in (PKG / name / f"{entry}.py").read_text()
    launch = (PKG / "launch" / "cobra_edge.launch.py").read_text()
    assert 'executable="camera_node"' in launch and f'package="{name}"' in launch
    compile(launch, "cobra_edge.launch.py", "exec")


def test_parameter_file_names_every_node_parameter():
    text = (PKG / "config" / "cobra_edge.yaml").read_text()
    keys = set(re.findall(r"^\s{4}(\w+):", text, re.M))
    assert keys == set(rclpy_node.PARAMETERS), keys ^ set(rclpy_node.PARAMETERS)


def test_rclpy_transport_on_a_ros2_machine(tiny_artifact):
    rclpy = pytest.importorskip("rclpy", reason="rclpy comes with a ROS 2 installation (not installable here)")
    from sensor_msgs.msg import Image
    from std_msgs.msg import String

    from edge.runtime import Runtime
    from ros_bridge.node import CameraNode, NodeConfig

    rclpy.init()
    try:
        node = rclpy.create_node("cobra_edge_test")
        camera = CameraNode(Runtime.load(tiny_artifact), rclpy_node.RclpyTransport(node),
                            NodeConfig(["/test_cam/image_raw"], "hi", max_new_tokens=3))
        peer = rclpy.create_node("camera_driver")
        pub = peer.create_publisher(Image, "/test_cam/image_raw", 10)
        got = []
        peer.create_subscription(String, "/test_cam/image_raw/answer", lambda m: got.append(m.data), 10)
        stop = threading.Event()
        worker = threading.Thread(target=camera.run, args=(stop,))
        worker.start()
        msg = Image(height=24, width=32, encoding="rgb8", step=96)
        msg.data = np.zeros(24 * 96, np.uint8).tobytes()
        msg.header.stamp.sec = 77
        end = time.monotonic() + 30
        while not got and time.monotonic() < end:
            pub.publish(msg)
            rclpy.spin_once(peer, timeout_sec=0.2)
        stop.set()
        worker.join(5)
        assert got and '"sec": 77' in got[0]
    finally:
        rclpy.try_shutdown()
