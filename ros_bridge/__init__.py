"""cobra-edge as a ROS 2 node: one stream per camera topic, answers and per-frame latency out.

    node.py       CameraNode: converts frames, feeds edge.FrameScheduler, publishes answer + latency JSON, and
                  with action heads <topic>/action arrays and a Twist
    messages.py   middleware-free values: Image / CompressedImage / header in; Float32MultiArray, Twist out
    cdr.py        the ROS 2 wire format (XCDR1) of the camera messages, for the DDS transport
    convert.py    Image (rgb8, bgr8, rgba8, bgra8, mono8, padded rows) and CompressedImage (jpeg, png) -> BGR
    twist.py      head values -> geometry_msgs/Twist: the --twist-map syntax, gains, limits
    watchdog.py   zero velocity when fresh answers stop (its own thread)
    dds.py        transport: Cyclone DDS speaking ROS 2 (topics rt/<name>), no ROS installation needed
    dds_types.py  the ROS 2 message types as Cyclone DDS IDL (names and layouts rmw uses)
    bag.py        transport: replay a ROS 2 bag (MCAP or SQLite3) through the node, outputs to JSON lines
    bag_out.py    ... and/or into a new ROS 2 bag (rosbags)
    rclpy_node.py transport + node for robots with ROS 2 (rclpy imported lazily, only there; not run here)

Like edge/ and engines/, this package never imports torch.
"""
