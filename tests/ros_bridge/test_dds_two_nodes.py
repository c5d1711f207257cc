"""Two machines without a cluster, on one: two ``cobra-edge ros --transport dds`` nodes in their own processes
on one DDS domain (loopback: interface lo, multicast off, unicast peer 127.0.0.1), each given half of a site's
four camera topics. This process publishes sensor_msgs/Image on all four and reads the answers: every topic is
answered, each by exactly one node, each frame at most once, and both nodes exit 0 on SIGINT."""

import ast
import json
import os
import signal
import time

import pytest

from . import rosmsgs  # noqa: F401  skips without rosbags

pytest.importorskip("cyclonedds", reason="the DDS transport needs cyclonedds (the 'ros' / 'test' extra)")
from cyclonedds.domain import Domain, DomainParticipant  # noqa: E402
from cyclonedds.pub import DataWriter  # noqa: E402
from cyclonedds.sub import DataReader  # noqa: E402
from cyclonedds.topic import Topic  # noqa: E402

from ros_bridge.dds import DEFAULT_QOS, DdsConfig  # noqa: E402
from ros_bridge.dds_types import Image_, String_  # noqa: E402

from .test_dds import NodeProcess, publish_round  # noqa: E402

SPLIT = {"A": ("/cam0/image_raw", "/cam1/image_raw"), "B": ("/cam2/image_raw", "/cam3/image_raw")}
TOPICS = SPLIT["A"] + SPLIT["B"]
FIRST_SEC = {t: 1000 * (i + 1) for i, t in enumerate(TOPICS)}  # a frame's topic is readable from its stamp
KINDS = ("answer", "latency")


def _summary(out: str) -> dict[str, dict]:
    """The per-topic counters a node prints when it stops (``  /cam0/image_raw: {'received': 3, ...}``)."""
    found = {}
    for line in out.splitlines():
        if line.startswith("  /") and ": {" in line:
            topic, _, counters = line.strip().partition(": ")
            found[topic] = ast.literal_eval(counters)
    return found


def test_two_nodes_on_one_domain_split_four_camera_topics(tiny_artifact):
    domain = 100 + (os.getpid() + 71) % 100  # apart from test_dds.py's domains and other runs on this machine
    nodes: dict[str, NodeProcess] = {}
    dds = dp = writers = readers = None
    try:
        for name, topics in SPLIT.items():
            nodes[name] = NodeProcess(tiny_artifact, domain, topics)
        for name, node in nodes.items():
            assert node.wait_for("camera topics on DDS", 90), (name, node.output())
            started = next(line for line in node.lines if "camera topics on DDS" in line)
            assert f"domain {domain} " in started, started  # both on one domain
            assert f": {', '.join(SPLIT[name])} (" in started, started  # each given its own topics only
        dds = Domain(domain, DdsConfig(domain).xml())
        dp = DomainParticipant(domain)
        writers = {t: DataWriter(dp, Topic(dp, "rt" + t, Image_)) for t in TOPICS}
        readers = {(t, kind): DataReader(dp, Topic(dp, f"rt{t}/{kind}", String_), qos=DEFAULT_QOS)
                   for t in TOPICS for kind in KINDS}
        got = {key: [] for key in readers}

        def drain() -> int:
            n = 0
            for key, r in readers.items():
                docs = [json.loads(s.data) for s in r.take(N=64) if hasattr(s, "data")]
                got[key] += docs
                n += len(docs)
            return n

        published = {t: {} for t in TOPICS}  # sec -> frame_id
        deadline = time.monotonic() + 60
        i = 0
        while time.monotonic() < deadline and not all(len(v) >= 3 for v in got.values()):
            publish_round(writers, TOPICS, FIRST_SEC, i, published)
            i += 1
            time.sleep(0.1)
            drain()
        assert all(len(v) >= 3 for v in got.values()), ({k: len(v) for k, v in got.items()},
                                                        nodes["A"].output(), nodes["B"].output())

        # no more frames: collect what is still being answered (quiet for 1.5 s, at most 15 s)
        end, quiet_since = time.monotonic() + 15, time.monotonic()
        while time.monotonic() < end and time.monotonic() - quiet_since < 1.5:
            time.sleep(0.1)
            if drain():
                quiet_since = time.monotonic()

        t0 = time.monotonic()
        for node in nodes.values():
            node.proc.send_signal(signal.SIGINT)
        rcs = {name: node.proc.wait(timeout=10) for name, node in nodes.items()}
        elapsed = time.monotonic() - t0
        outs = {name: node.output() for name, node in nodes.items()}
        print(f"SIGINT -> both exited in {elapsed:.2f} s after {i} rounds of 4 frames")
        drain()  # anything answered while they stopped (the readers keep what arrived)

        for name, node in nodes.items():
            assert rcs[name] == 0, (name, outs[name])
            assert "DDS participants left open: 0" in outs[name], (name, outs[name])
            assert "still busy" not in outs[name], (name, outs[name])

        # each node reports counters for its own topics and no others
        summaries = {name: _summary(outs[name]) for name in nodes}
        for name in nodes:
            assert sorted(summaries[name]) == sorted(SPLIT[name]), (name, outs[name])

        for t in TOPICS:
            owner = "A" if t in SPLIT["A"] else "B"
            answers, records = got[(t, "answer")], got[(t, "latency")]
            secs = [a["stamp"]["sec"] for a in answers]
            assert len(secs) == len(set(secs)), (t, sorted(secs))  # each frame answered at most once
            for a in answers:
                assert a["kind"] == "answer" and a["topic"] == t, a
                assert a["stamp"]["sec"] in published[t] and a["stamp"]["nanosec"] == 500, a
                assert a["frame_id"] == published[t][a["stamp"]["sec"]], a
                assert isinstance(a["text"], str) and 1 <= a["tokens"] <= 4, a
            assert sorted(r["stamp"]["sec"] for r in records) == sorted(secs), t  # one record per answer
            for rec in records:
                assert rec["topic"] == t and rec["stages_ms"]["total"] > 0, rec
                assert rec["counters"]["received"] >= rec["counters"]["answered"] >= 1, rec
            # exactly one node answered t: its owner's count is every answer this process saw on t
            counters = summaries[owner][t]
            assert counters["answered"] == len(answers), (t, counters, len(answers))
            assert counters["received"] <= len(published[t]), (t, counters, len(published[t]))
            print(f"{t}: node {owner}, {len(published[t])} published, {counters}")
    finally:
        del readers, writers, dp, dds
        for node in nodes.values():
            if node.proc.poll() is None:
                node.proc.kill()
                node.proc.wait(timeout=10)
