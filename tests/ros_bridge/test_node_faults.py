"""The camera node under a hostile tester. In process (a transport that is a list): no message kills the node, a
failure inside a batch is reported on its topic and the node keeps serving, counts add up. In its own process
(bag replay): a failure of the inference worker itself ends the node with exit 3 within 2 s, and SIGINT or SIGTERM
stop it within 2 s in every phase (start-up, replay, drain). Over DDS: test_dds.py."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from .rosmsgs import compressed_msg, image_msg, scene, write_bag  # skips without rosbags

from edge.runtime import Runtime
from ros_bridge.node import CameraNode, NodeConfig
from tests.conftest import REPO
from tests.faults import FaultyEngine, png_claiming, raise_on_call

SEC = 1_000_000_000
TOPICS = ["/cam0/image_raw", "/cam1/image_raw/compressed"]


class ListTransport:
    """Delivers queued (topic, msg) pairs in order, then waits for stop; keeps what the node publishes."""

    def __init__(self, messages, live=False):
        self.messages, self.live = list(messages), live
        self.handlers, self.published = {}, []
        self.closed = False

    def advertise(self, topic):
        pass

    def subscribe(self, topic, msg_type, handler):
        self.handlers[topic] = handler

    def spin(self, stop):
        for topic, msg in self.messages:
            if stop.is_set():
                return
            self.handlers[topic](topic, msg, time.time())

    def publish(self, topic, text):
        self.published.append((topic, json.loads(text)))

    def close(self):
        self.closed = True
        return 0

    def of(self, kind, topic):
        return [d for t, d in self.published if d["kind"] == kind and d["topic"] == topic]


class Unconvertible:
    """A message object whose fields raise what nobody planned for (a broken middleware binding)."""

    @property
    def header(self):
        raise OverflowError("injected: the binding could not read the header")


def _bad_jpeg():
    return b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01 corrupt"


def _hostile_stream():
    """Good frames of two topics with every kind of bad message between them; -> (messages, good stamps)."""
    odd = image_msg(scene(seed=3), "bgr8", sec=3)
    odd.encoding = "yuv422"
    msgs = [
        (TOPICS[0], image_msg(scene(seed=1), "rgb8", sec=1)),
        (TOPICS[1], compressed_msg(scene(seed=2), "png", sec=101, data=png_claiming(100_000, 100_000))),
        (TOPICS[1], compressed_msg(scene(seed=2), "jpeg", sec=102)),
        (TOPICS[0], odd),
        (TOPICS[1], compressed_msg(scene(), "jpeg", sec=103, data=_bad_jpeg())),
        (TOPICS[0], Unconvertible()),
        (TOPICS[0], "a string, not a message"),
        (TOPICS[1], compressed_msg(scene(seed=4), "png", sec=104, data=png_claiming(12000, 12000))),
        (TOPICS[0], image_msg(scene(seed=5), "mono8", sec=5)),
        (TOPICS[1], compressed_msg(scene(seed=6), "png", sec=106)),
    ]
    return msgs, {TOPICS[0]: [1, 5], TOPICS[1]: [102, 106]}


def _node(tiny_artifact, transport, **cfg):
    runtime = Runtime.load(tiny_artifact, max_streams=2, threads=1)
    return CameraNode(runtime, transport, NodeConfig(TOPICS, "What is in the image?", max_new_tokens=3, **cfg))


def _run(node, transport, timeout=60):
    stop = threading.Event()
    runner = threading.Thread(target=node.run, args=(stop,))
    runner.start()
    runner.join(timeout)
    assert not runner.is_alive(), "the node did not finish"
    assert transport.closed


def _counts_add_up(node):
    for topic in TOPICS:
        c = node.topic_counters(topic)
        assert c["received"] == c["answered"] + c["superseded"] + c["stale"] + c["errors"] + c["conversion_errors"], c


def test_no_message_kills_the_node_and_every_good_frame_is_answered(tiny_artifact):
    msgs, good = _hostile_stream()
    transport = ListTransport(msgs)
    node = _node(tiny_artifact, transport)
    _run(node, transport)
    for topic in TOPICS:
        assert [a["stamp"]["sec"] for a in transport.of("answer", topic)] == good[topic]
    errors = {t: [e["error"] for e in transport.of("error", t)] for t in TOPICS}
    print(json.dumps(errors, indent=1))
    assert len(errors[TOPICS[0]]) == 3 and len(errors[TOPICS[1]]) == 3
    assert any("unsupported image encoding 'yuv422'" in e for e in errors[TOPICS[0]])
    assert any("unexpected OverflowError converting the message" in e for e in errors[TOPICS[0]])
    assert any("not a camera message (str" in e for e in errors[TOPICS[0]])
    assert any("100000 x 100000 = 10,000,000,000 pixels, over the limit" in e for e in errors[TOPICS[1]])
    assert any("12000 x 12000" in e for e in errors[TOPICS[1]])  # valid, but 0.43 GB decoded
    assert any("JPEG header truncated" in e for e in errors[TOPICS[1]])
    assert all(e["stage"] == "conversion" for t in TOPICS for e in transport.of("error", t))
    assert node.failure is None
    _counts_add_up(node)


def test_a_failure_inside_a_batch_is_reported_on_the_topic_and_the_node_keeps_serving(tiny_artifact):
    msgs = [(TOPICS[0], image_msg(scene(seed=i), "rgb8", sec=i)) for i in range(4)]
    transport = ListTransport(msgs)
    node = _node(tiny_artifact, transport)
    node.runtime.engines["vision"] = FaultyEngine(node.runtime.engines["vision"],
                                                  raise_on_call(2, IndexError("injected: a kernel read past its buffer")))
    _run(node, transport)
    assert [a["stamp"]["sec"] for a in transport.of("answer", TOPICS[0])] == [0, 2, 3]
    (err,) = transport.of("error", TOPICS[0])
    assert err["stage"] == "runtime" and "unexpected IndexError in a batch of 1: injected" in err["error"]
    assert err["counters"]["errors"] == 1 and node.failure is None
    _counts_add_up(node)


def test_the_pixel_limit_is_the_users(tiny_artifact):
    msgs = [(TOPICS[0], image_msg(scene(48, 64, seed=1), "rgb8", sec=1)),
            (TOPICS[0], image_msg(scene(24, 32, seed=2), "rgb8", sec=2))]
    transport = ListTransport(msgs)
    _run(_node(tiny_artifact, transport, max_pixels=32 * 24), transport)
    assert [a["stamp"]["sec"] for a in transport.of("answer", TOPICS[0])] == [2]
    assert "48 = 3,072 pixels is over the limit of 768" in transport.of("error", TOPICS[0])[0]["error"]


# --- the node in its own process: bag replay ------------------------------------------------------------------

def _bag(tmp_path, n, spacing_s=0.1):
    msgs = [(TOPICS[0], SEC + int(i * spacing_s * SEC), image_msg(scene(seed=i), "rgb8", sec=10 + i)) for i in range(n)]
    return write_bag(tmp_path / f"bag{n}", "mcap", msgs)


def _node_process(tmp_path, tiny_artifact, bag, *extra, prelude=""):
    """``cobra-edge ros --transport bag`` in its own process, after ``prelude`` (fault injection) ran there."""
    code = prelude + "\nimport sys\nfrom edge.cli import main\nsys.exit(main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", code, "ros", "--transport", "bag", "--bag", str(bag), "--model", str(tiny_artifact),
           "--out", str(tmp_path / "out.jsonl"), "--max-new-tokens", "2", *extra]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


class Lines:
    """The process's output, read by a thread, with a wait for a line."""

    def __init__(self, proc):
        self.proc, self.lines = proc, []
        self.t = threading.Thread(target=lambda: [self.lines.append((time.monotonic(), ln.rstrip()))
                                                  for ln in proc.stdout], daemon=True)
        self.t.start()

    def wait_for(self, text, timeout=60):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for t, ln in self.lines:
                if text in ln:
                    return t
            if self.proc.poll() is not None and not self.t.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"{text!r} not seen in: " + "\n".join(ln for _, ln in self.lines))

    def text(self):
        self.t.join(5)
        return "\n".join(ln for _, ln in self.lines)


def test_bag_replay_in_its_own_process_answers_every_good_frame_among_hostile_ones(tiny_artifact, tmp_path):
    msgs, good = _hostile_stream()
    recorded = [(t, SEC + i * SEC // 10, m) for i, (t, m) in enumerate(msgs) if not isinstance(m, (str, Unconvertible))]
    p = _node_process(tmp_path, tiny_artifact, write_bag(tmp_path / "hostile", "mcap", recorded), "--max-speed")
    out = Lines(p)
    rc = p.wait(timeout=120)
    text = out.text()
    assert rc == 0 and "Traceback" not in text, text
    lines = [json.loads(ln) for ln in (tmp_path / "out.jsonl").read_text().splitlines()]
    for topic in TOPICS:
        assert [d["stamp"]["sec"] for d in lines if d["kind"] == "answer" and d["topic"] == topic] == good[topic]
    errors = [d["error"] for d in lines if d["kind"] == "error"]
    assert len(errors) == 4 and sum("over the limit" in e for e in errors) == 2
    assert any("yuv422" in e for e in errors) and any("JPEG header truncated" in e for e in errors)


def _time_to_exit(p, marker, sig=None):
    """Wait for ``marker`` in the process's output, then send ``sig`` (if given, 0.3 s later); -> (exit code,
    seconds from the marker or the signal to the exit, the output)."""
    out = Lines(p)
    try:
        t0 = out.wait_for(marker)
        if sig is not None:
            time.sleep(0.3)
            t0 = time.monotonic()
            p.send_signal(sig)
        rc = p.wait(timeout=10)
        took = time.monotonic() - t0
    finally:
        p.kill()
    return rc, took, out.text()


def test_a_failure_of_the_worker_itself_ends_the_node_with_exit_3(tiny_artifact, tmp_path):
    prelude = ("import sys, time\nimport edge.scheduler as s\nreal = s.FrameScheduler._take\n"
               "def take(self):\n    items = real(self)\n    if self.stats['/cam0/image_raw'].answered >= 2:\n"
               "        print('INJECTED', flush=True); raise RuntimeError('injected: scheduler state corrupted')\n"
               "    return items\ns.FrameScheduler._take = take")
    p = _node_process(tmp_path, tiny_artifact, _bag(tmp_path, 30, 0.05), prelude=prelude)
    rc, took, text = _time_to_exit(p, "INJECTED")
    print(text, f"\nexit {rc} {took:.2f} s after the failure")
    assert rc == 3 and took < 2, text
    assert "the inference worker failed (RuntimeError: injected: scheduler state corrupted)" in text
    assert "frames after that were not answered" in text


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("phase", ["start-up", "replay", "drain"])
def test_bag_replay_stops_within_2_s_of_a_signal_in_every_phase(tiny_artifact, tmp_path, phase, sig):
    if phase == "start-up":  # the artifact takes long to load: the signal lands there
        prelude = ("import time, edge.runtime as r\nreal = r.Runtime.load.__func__\n"
                   "def slow(cls, *a, **k):\n    time.sleep(30)\n    return real(cls, *a, **k)\n"
                   "r.Runtime.load = classmethod(slow)")
        bag, marker, extra = _bag(tmp_path, 3), "cobra-edge ros: loading", ()
    elif phase == "replay":  # recorded pace: 60 frames over 30 s
        prelude, bag, marker, extra = "", _bag(tmp_path, 60, 0.5), "camera topics on bag", ()
    else:  # the bag has ended at max speed, the worker is inside a slow batch with frames queued behind it
        prelude = ("import time, edge.batch as b\nreal = b.answer_batch\n"
                   "def slow(rt, reqs):\n    time.sleep(3)\n    return real(rt, reqs)\nb.answer_batch = slow\n"
                   "import edge.runtime as r\nr.answer_batch = slow")
        bag, marker, extra = _bag(tmp_path, 3), "source ended; answering", ("--max-speed",)
    p = _node_process(tmp_path, tiny_artifact, bag, *extra, prelude=prelude)
    rc, took, text = _time_to_exit(p, marker, sig)
    print(text, f"\n{phase}: exit {rc} {took:.2f} s after {sig.name}")
    assert took < 2, text
    assert "Traceback" not in text
    if phase == "start-up":
        assert rc == 128 + sig and f"interrupted by {sig.name}" in text
    else:
        assert rc == 0 and "cobra-edge ros: stopped" in text
        lines = (tmp_path / "out.jsonl").read_text().splitlines()
        assert all(json.loads(ln)["kind"] in ("answer", "latency", "error") for ln in lines)  # whole lines
