"""ament_python package that puts cobra-edge's rclpy node on `ros2 run` / `ros2 launch`.

Build in a colcon workspace (cobra-edge itself installed with pip in the same Python):
    ln -s /path/to/cobra-edge/ros_bridge/ros2 ~/ros2_ws/src/cobra_edge_ros
    cd ~/ros2_ws && colcon build --packages-select cobra_edge_ros && . install/setup.bash
"""

from glob import glob

from setuptools import setup

PACKAGE = "cobra_edge_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=[PACKAGE],
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    entry_points={"console_scripts": [f"camera_node = {PACKAGE}.camera_node:main"]},
)
