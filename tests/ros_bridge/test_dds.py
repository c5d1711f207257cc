"""The node on real DDS, in its own process: a second process (this one) publishes sensor_msgs/Image on two
camera topics, serialized by ``rosbags`` and written raw, and reads the node's answers and latency records.
All traffic stays on loopback (interface lo, multicast off, unicast peer 127.0.0.1)."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from .rosmsgs import cdr, compressed_msg, image_msg, scene  # skips without rosbags

pytest.importorskip("cyclonedds", reason="the DDS transport needs cyclonedds (the 'ros' / 'test' extra)")
from cyclonedds._clayer import ddspy_write  # noqa: E402  raw CDR write: the bytes are rosbags', not ours
from cyclonedds.domain import Domain, DomainParticipant  # noqa: E402
from cyclonedds.pub import DataWriter  # noqa: E402
from cyclonedds.sub import DataReader  # noqa: E402
from cyclonedds.topic import Topic  # noqa: E402

from ros_bridge.dds import DEFAULT_QOS, DdsConfig  # noqa: E402
from ros_bridge.dds_types import CompressedImage_, Image_, String_  # noqa: E402
from tests.faults import png_claiming  # noqa: E402

TOPICS = ("/cam0/image_raw", "/cam1/image_raw")
FIRST_SEC = {"/cam0/image_raw": 1000, "/cam1/image_raw": 2000}


class NodeProcess:
    """``cobra-edge ros --transport dds`` in a subprocess, its output collected by a thread."""

    def __init__(self, artifact, domain: int, topics=TOPICS, *extra: str):
        cmd = [sys.executable, "-m", "edge.cli", "ros", "--transport", "dds", "--model", str(artifact),
               "--topics", ",".join(topics), "--domain-id", str(domain), "--interface", "lo",
               "--max-new-tokens", "4", *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def wait_for(self, text: str, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.proc.poll() is None:
            if any(text in line for line in self.lines):
                return True
            time.sleep(0.05)
        return any(text in line for line in self.lines)

    def output(self) -> str:
        self._reader.join(timeout=2)
        return "\n".join(self.lines)


def publish_round(writers, topics, first_sec: dict, i: int, published: dict) -> None:
    """Round ``i``: one rgb8 frame per topic, stamped ``first_sec[topic] + i`` s (so a stamp names its topic) with
    frame id ``<camera>_optical``; each recorded in ``published[topic][sec]``."""
    for t in topics:
        sec = first_sec[t] + i
        frame_id = f"{t.split('/')[1]}_optical"
        ddspy_write(writers[t]._ref, cdr(image_msg(scene(48, 64, seed=i), "rgb8", sec, 500, frame_id=frame_id)))
        published[t][sec] = frame_id


def test_node_answers_two_camera_topics_over_dds_and_stops_on_sigint(tiny_artifact):
    domain = 100 + os.getpid() % 100  # apart from other test runs on this machine
    node = NodeProcess(tiny_artifact, domain)
    try:
        assert node.wait_for("camera topics on DDS", 60), node.output()
        dds = Domain(domain, DdsConfig(domain).xml())
        dp = DomainParticipant(domain)
        writers = {t: DataWriter(dp, Topic(dp, "rt" + t, Image_)) for t in TOPICS}
        readers = {(t, kind): DataReader(dp, Topic(dp, f"rt{t}/{kind}", String_), qos=DEFAULT_QOS)
                   for t in TOPICS for kind in ("answer", "latency")}
        got = {key: [] for key in readers}
        published = {t: {} for t in TOPICS}  # sec -> frame_id
        deadline = time.monotonic() + 60
        i = 0
        while time.monotonic() < deadline and not all(len(v) >= 2 for v in got.values()):
            publish_round(writers, TOPICS, FIRST_SEC, i, published)
            i += 1
            time.sleep(0.1)
            for key, r in readers.items():
                got[key] += [json.loads(s.data) for s in r.take(N=32) if hasattr(s, "data")]
        assert all(len(v) >= 2 for v in got.values()), (got, node.output())

        for t in TOPICS:
            for a in got[(t, "answer")]:
                assert a["kind"] == "answer" and a["topic"] == t
                sec = a["stamp"]["sec"]
                assert sec in published[t] and a["stamp"]["nanosec"] == 500, a  # the stamp of a frame of this topic
                assert a["frame_id"] == published[t][sec]
                assert isinstance(a["text"], str) and 1 <= a["tokens"] <= 4
            for rec in got[(t, "latency")]:
                assert rec["topic"] == t and rec["stamp"]["sec"] in published[t]
                assert rec["stages_ms"]["total"] > 0 and rec["stages_ms"]["vision"] > 0
                assert rec["counters"]["received"] >= rec["counters"]["answered"] >= 1
                assert rec["stamp_to_answer_ms"] is not None and rec["batch_size"] >= 1
            print(t, got[(t, "answer")][0], got[(t, "latency")][0]["stages_ms"])

        t0 = time.monotonic()
        node.proc.send_signal(signal.SIGINT)
        rc = node.proc.wait(timeout=10)
        elapsed = time.monotonic() - t0
        out = node.output()
        print(f"SIGINT -> exit in {elapsed:.2f} s")
        assert rc == 0, out
        assert elapsed < 2.0, out
        assert "DDS participants left open: 0" in out, out
        assert "still busy" not in out, out
        del readers, writers, dp, dds
    finally:
        if node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait()


def test_node_on_dds_survives_hostile_messages_between_good_frames(tiny_artifact):
    """Another process publishes, one message at a time, good frames with an oversized PNG (a 200-byte header
    claiming 100000 x 100000), a corrupt JPEG and an unknown encoding between them: each bad one is an error on
    its topic, every good one is answered, and the node stops cleanly after."""
    topics = ("/cam0/image_raw", "/cam1/image_raw/compressed")
    domain = 100 + (os.getpid() + 37) % 100
    odd = image_msg(scene(seed=3), "bgr8", sec=3)
    odd.encoding = "yuv422"
    sequence = [  # (topic, message, sec, good)
        (topics[0], image_msg(scene(seed=1), "rgb8", sec=1), 1, True),
        (topics[1], compressed_msg(scene(), "png", sec=101, data=png_claiming(100_000, 100_000)), 101, False),
        (topics[1], compressed_msg(scene(seed=2), "jpeg", sec=102), 102, True),
        (topics[1], compressed_msg(scene(), "jpeg", sec=103, data=b"\xff\xd8\xff\xe0\x00\x10JFIF corrupt"), 103, False),
        (topics[0], odd, 3, False),
        (topics[0], image_msg(scene(seed=4), "mono8", sec=4), 4, True),
        (topics[1], compressed_msg(scene(seed=5), "png", sec=105), 105, True),
    ]
    node = NodeProcess(tiny_artifact, domain, topics)
    try:
        assert node.wait_for("camera topics on DDS", 60), node.output()
        dds = Domain(domain, DdsConfig(domain).xml())
        dp = DomainParticipant(domain)
        writers = {topics[0]: DataWriter(dp, Topic(dp, "rt" + topics[0], Image_)),
                   topics[1]: DataWriter(dp, Topic(dp, "rt" + topics[1], CompressedImage_))}
        readers = {(t, kind): DataReader(dp, Topic(dp, f"rt{t}/{kind}", String_), qos=DEFAULT_QOS)
                   for t in topics for kind in ("answer", "error")}
        seen = {"answer": {}, "error": []}
        bad_sent = 0
        for topic, msg, sec, good in sequence:
            bad_sent += not good
            # one message at a time: wait for its answer (or error) before the next, resend if DDS lost it
            for attempt in range(5):
                ddspy_write(writers[topic]._ref, cdr(msg))
                end = time.monotonic() + 6
                done = False
                while time.monotonic() < end and not done:
                    time.sleep(0.05)
                    for (t, kind), r in readers.items():
                        for sample in r.take(N=32):
                            if not hasattr(sample, "data"):
                                continue
                            doc = json.loads(sample.data)
                            if kind == "answer":
                                seen["answer"].setdefault(t, []).append(doc["stamp"]["sec"])
                            else:
                                seen["error"].append(doc)
                    done = sec in seen["answer"].get(topic, []) if good else len(seen["error"]) >= bad_sent
                if done:
                    break
            assert done, (topic, sec, seen, node.output())
        assert sorted(seen["answer"][topics[0]]) == [1, 4] and sorted(seen["answer"][topics[1]]) == [102, 105]
        kinds = [(e["topic"], e["stage"]) for e in seen["error"]]
        assert kinds == [(topics[1], "conversion"), (topics[1], "conversion"), (topics[0], "conversion")], kinds
        assert "over the limit" in seen["error"][0]["error"] and "yuv422" in seen["error"][2]["error"]
        node.proc.send_signal(signal.SIGINT)
        rc = node.proc.wait(timeout=10)
        assert rc == 0 and "DDS participants left open: 0" in node.output(), node.output()
        del readers, writers, dp, dds
    finally:
        if node.proc.poll() is None:
            node.proc.kill()
            node.proc.wait()
