"""`ros2 run cobra_edge_ros camera_node`: the rclpy node of cobra-edge (ros_bridge.rclpy_node)."""

import sys

from ros_bridge.rclpy_node import main as _main


def main(args=None):
    sys.exit(_main(args))
