"""cobra-edge as a ROS 2 node: one stream per camera topic, answers and per-frame latency out.

    node.py       CameraNode: converts frames, feeds edge.FrameScheduler, publishes answer + latency JSON
    messages.py   middleware-free Image / CompressedImage / header values (what every transport hands the node)
    cdr.py        the ROS 2 wire format (XCDR1) of those messages, for the DDS transport
    convert.py    Image (rgb8, bgr8, rgba8, bgra8, mono8, padded rows) and CompressedImage (jpeg, png) -> BGR
    dds.py        transport: Cyclone DDS speaking ROS 2 (topics rt/<name>), no ROS installation needed
    bag.py        transport: replay a ROS 2 bag (MCAP or SQLite3) through the node, answers to JSON lines
    rclpy_node.py transport + node for robots with ROS 2 (rclpy imported lazily, only there)

Like edge/ and engines/, this package never imports torch.
"""
