"""ros2 launch cobra_edge_ros cobra_edge.launch.py [params:=/path/to/cobra_edge.yaml]

Starts the cobra-edge camera node with a parameters file (default: this package's config/cobra_edge.yaml;
copy it, set `model` and `topics`, pass it as params:=...).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def generate_launch_description():
    default_params = os.path.join(get_package_share_directory("cobra_edge_ros"), "config", "cobra_edge.yaml")
    return LaunchDescription([
        DeclareLaunchArgument("params", default_value=default_params, description="node parameters (YAML)"),
        Node(
            package="cobra_edge_ros",
            executable="camera_node",
            name="cobra_edge",
            output="screen",
            parameters=[LaunchConfiguration("params")],
        ),
    ])
