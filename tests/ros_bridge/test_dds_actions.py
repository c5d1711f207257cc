"""Action heads over DDS: the node in its own process (``cobra-edge ros --transport dds --act --twist ...``) answers
camera frames published by another process (this one) with a labelled std_msgs/Float32MultiArray on
``<topic>/action`` (equal to ``Stream.act`` on the same frames in-process) and a geometry_msgs/Twist on /cmd_vel
that follows the mapping and limits; when the frames stop, its watchdog sends zero velocity once per deadline and
counts it. All traffic stays on loopback (interface lo, multicast off, unicast peer 127.0.0.1)."""

import ast
import json
import os
import signal
import time

import numpy as np
import pytest

from .conftest import HEAD_VALUES
from .rosmsgs import TYPESTORE, cdr, image_msg, scene  # skips without rosbags

pytest.importorskip("cyclonedds", reason="the DDS transport needs cyclonedds (the 'ros' / 'test' extra)")
from cyclonedds._clayer import ddspy_write  # noqa: E402  raw CDR write: the bytes are rosbags', not ours
from cyclonedds.domain import Domain, DomainParticipant  # noqa: E402
from cyclonedds.pub import DataWriter  # noqa: E402
from cyclonedds.sub import DataReader  # noqa: E402
from cyclonedds.topic import Topic  # noqa: E402

from edge.runtime import Runtime  # noqa: E402
from ros_bridge.convert import as_message, to_bgr  # noqa: E402
from ros_bridge.dds import DEFAULT_QOS, DdsConfig  # noqa: E402
from ros_bridge.dds_types import Float32MultiArray_, Image_, String_, Twist_, to_idl  # noqa: E402
from ros_bridge.messages import Float32MultiArrayMsg, TwistMsg, Vector3  # noqa: E402

from .test_dds import NodeProcess  # noqa: E402

TOPICS = ("/cam0/image_raw", "/cam1/image_raw")
FIRST_SEC = {"/cam0/image_raw": 1000, "/cam1/image_raw": 2000}
PROMPT = "Where is the target?"
DEADLINE_MS = 1000.0
MAX_LINEAR, MAX_ANGULAR = 0.6, 0.8  # m/s, rad/s
TOL = 1e-5


def test_outgoing_dds_types_are_the_ros2_types_byte_for_byte():
    """Our IDL samples serialize to exactly the CDR rosbags writes for the same ROS 2 message, and back."""
    T = TYPESTORE.types
    action = Float32MultiArrayMsg.labelled(HEAD_VALUES, {"distance": 2.5, "bearing": -0.3})
    assert action.labels == list(HEAD_VALUES) and action.data == (float(np.float32(-0.3)), 2.5)
    theirs = T["std_msgs/msg/Float32MultiArray"](
        layout=T["std_msgs/msg/MultiArrayLayout"](
            dim=[T["std_msgs/msg/MultiArrayDimension"](label="bearing,distance", size=2, stride=2)], data_offset=0),
        data=np.array([-0.3, 2.5], np.float32))
    ours = to_idl(action).serialize()
    assert ours == cdr(theirs)
    back = TYPESTORE.deserialize_cdr(ours, "std_msgs/msg/Float32MultiArray")
    assert back.layout.dim[0].label == "bearing,distance" and back.data.tolist() == list(action.data)

    twist = TwistMsg(Vector3(0.25, 0.0, 0.0), Vector3(0.0, 0.0, -0.5))
    vec = T["geometry_msgs/msg/Vector3"]
    theirs = T["geometry_msgs/msg/Twist"](linear=vec(x=0.25, y=0.0, z=0.0), angular=vec(x=0.0, y=0.0, z=-0.5))
    assert to_idl(twist).serialize() == cdr(theirs)
    assert Float32MultiArray_.__idl_typename__ == "std_msgs::msg::dds_::Float32MultiArray_"
    assert Twist_.__idl_typename__ == "geometry_msgs::msg::dds_::Twist_"
    assert to_idl("text") == String_(data="text")


def _is_zero(s) -> bool:
    return not any((s.linear.x, s.linear.y, s.linear.z, s.angular.x, s.angular.y, s.angular.z))


def _counters(output: str, topic: str) -> dict:
    line = next(ln for ln in output.splitlines() if ln.startswith(f"  {topic}: {{"))
    return ast.literal_eval(line.split(": ", 1)[1])


def test_node_on_dds_publishes_actions_and_a_twist_and_zero_velocity_when_frames_stop(head_artifact):
    domain = 100 + (os.getpid() + 61) % 100
    node = NodeProcess(head_artifact, domain, TOPICS, "--act", "--prompt", PROMPT, "--twist", "/cmd_vel",
                       "--twist-map", "linear.x=0.5*distance", "angular.z=bearing*-2", "--twist-source", TOPICS[1],
                       "--max-linear", str(MAX_LINEAR), "--max-angular", str(MAX_ANGULAR),
                       "--deadline-ms", str(DEADLINE_MS))
    try:
        assert node.wait_for("camera topics on DDS", 60), node.output()
        assert node.wait_for("actions on <topic>/action: [bearing, distance] (--act: no text answers)", 5)
        dds = Domain(domain, DdsConfig(domain).xml())
        dp = DomainParticipant(domain)
        writers = {t: DataWriter(dp, Topic(dp, "rt" + t, Image_)) for t in TOPICS}
        readers = {(t, kind): DataReader(dp, Topic(dp, f"rt{t}/{kind}", ty), qos=DEFAULT_QOS)
                   for t in TOPICS for kind, ty in (("action", Float32MultiArray_), ("latency", String_))}
        answers = DataReader(dp, Topic(dp, f"rt{TOPICS[0]}/answer", String_), qos=DEFAULT_QOS)  # --act: none
        twist_reader = DataReader(dp, Topic(dp, "rt/cmd_vel", Twist_), qos=DEFAULT_QOS)
        got = {key: [] for key in readers}
        twists = []  # (time received, Twist_)

        def poll():
            for (t, kind), r in readers.items():
                for s in r.take(N=64):
                    if isinstance(s, Float32MultiArray_):
                        got[(t, kind)].append(s)
                    elif isinstance(s, String_):
                        got[(t, kind)].append(json.loads(s.data))
            now = time.monotonic()
            twists.extend((now, s) for s in twist_reader.take(N=64) if isinstance(s, Twist_))

        # 1. four rounds, one frame per camera each; the next round when both are answered (resent if DDS lost one)
        frames = {}  # (topic, sec) -> the BGR frame the node converts the message to
        for i in range(4):
            msgs = {t: image_msg(scene(48, 64, seed=10 * k + i), "rgb8", FIRST_SEC[t] + i, 0) for k, t in
                    enumerate(TOPICS)}
            frames.update({(t, FIRST_SEC[t] + i): to_bgr(as_message(m)) for t, m in msgs.items()})
            done = False
            for attempt in range(5):
                for t, m in msgs.items():
                    ddspy_write(writers[t]._ref, cdr(m))
                end = time.monotonic() + 6
                while not done and time.monotonic() < end:
                    time.sleep(0.05)
                    poll()
                    done = all(any(r["stamp"]["sec"] == FIRST_SEC[t] + i for r in got[(t, "latency")]) for t in TOPICS)
                if done:
                    break
            assert done, (i, got, node.output())
        time.sleep(0.2)
        poll()

        # 2. the watchdog: no frames from now on; zero velocity a deadline after the last command, then every deadline
        moving = [(tr, s) for tr, s in twists if not _is_zero(s)]
        assert moving, (twists, node.output())
        t_last = moving[-1][0]
        end = time.monotonic() + 3 * DEADLINE_MS / 1e3 + 3
        while time.monotonic() < end and len([1 for tr, s in twists if tr > t_last]) < 3:
            time.sleep(0.02)
            poll()
        zeros = [tr for tr, s in twists if tr > t_last]
        assert all(_is_zero(s) for tr, s in twists if tr > t_last)
        gaps = np.diff([t_last, *zeros])
        print(f"zero velocity after the last command: {np.round(gaps, 3).tolist()} s apart (deadline "
              f"{DEADLINE_MS / 1e3} s)")
        assert len(zeros) >= 3, (twists, node.output())
        assert 0.7 * DEADLINE_MS / 1e3 <= gaps[0] <= DEADLINE_MS / 1e3 + 0.6, gaps
        assert all(0.6 * DEADLINE_MS / 1e3 <= g <= 1.6 * DEADLINE_MS / 1e3 for g in gaps[1:3]), gaps
        zeros_seen = sum(_is_zero(s) for _, s in twists)  # all the watchdog's (the last zero comes after SIGINT)
        assert not [s for s in answers.take(N=8) if isinstance(s, String_)]  # --act publishes no text answers

        node.proc.send_signal(signal.SIGINT)
        rc = node.proc.wait(timeout=10)
        out = node.output()
        assert rc == 0 and "DDS participants left open: 0" in out, out
        assert "watchdog: no fresh answer for 1000 ms: zero velocity on /cmd_vel (from /cam1/image_raw)" in out, out
        assert "watchdog: stopped; sent zero velocity on /cmd_vel" in out, out
        counters = _counters(out, TOPICS[1])
        print("counters of the twist source:", counters)
        assert counters["watchdog_zero"] >= zeros_seen
        assert "watchdog_zero" not in _counters(out, TOPICS[0])
        del writers, dp, dds  # (the readers go with poll, at the end of the test)
    finally:
        if node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait()

    # 3. every action array: labelled, tied to its frame by the latency record after it, equal to Stream.act there
    runtime = Runtime.load(head_artifact, max_streams=2, threads=1)
    streams = {t: runtime.open_stream(t) for t in TOPICS}
    published = []  # the Twists the latency records of the source say were sent, in order
    for t in TOPICS:
        arrays, records = got[(t, "action")], got[(t, "latency")]
        assert len(arrays) == len(records) >= 4, (len(arrays), len(records))
        for arr, rec in zip(arrays, records):
            dim = arr.layout.dim
            assert [(d.label, d.size, d.stride) for d in dim] == [("bearing,distance", 2, 2)]
            assert arr.layout.data_offset == 0 and len(arr.data) == 2
            assert rec["outputs"] == dict(zip(HEAD_VALUES, arr.data))  # the record of this very array
            expected = streams[t].act(frames[(t, rec["stamp"]["sec"])], PROMPT).outputs
            err = max(abs(arr.data[k] - expected[name]) for k, name in enumerate(HEAD_VALUES))
            print(t, rec["stamp"]["sec"], list(arr.data), f"max abs err vs Stream.act {err:.2e}")
            assert err <= TOL
            if t != TOPICS[1]:
                assert "twist" not in rec
                continue
            tw = rec["twist"]
            assert tw["status"] in ("published", "stale"), tw
            lin = min(max(0.5 * expected["distance"], -MAX_LINEAR), MAX_LINEAR)
            ang = min(max(-2.0 * expected["bearing"], -MAX_ANGULAR), MAX_ANGULAR)
            assert abs(tw["linear"]["x"] - lin) <= TOL and abs(tw["angular"]["z"] - ang) <= TOL, (tw, lin, ang)
            assert tw["linear"]["y"] == tw["linear"]["z"] == tw["angular"]["x"] == tw["angular"]["y"] == 0
            if tw["status"] == "published":
                published.append((tw["linear"]["x"], tw["angular"]["z"]))
    assert len(published) >= 2, published  # the rest were answers of frames older than the deadline
    assert [(s.linear.x, s.angular.z) for _, s in moving] == published  # what /cmd_vel carried, in order
    assert counters["twists"] == len(published)
    assert counters["twists"] + counters["twists_stale"] == len(got[(TOPICS[1], "latency")])
