"""Bag replay through the node (``cobra-edge ros --transport bag``): bags written here with rosbags, MCAP and
SQLite3; one answer per frame per topic at max speed, stamps kept, bad frames reported on their topic only."""

import json
import time

import numpy as np
import pytest

from .rosmsgs import compressed_msg, image_msg, scene, write_bag  # skips without rosbags

from edge.cli import main
from edge.runtime import Runtime
from ros_bridge.convert import as_message, to_bgr

SEC = 1_000_000_000


def replay(bag, artifact, out, *extra) -> list[dict]:
    rc = main(["ros", "--transport", "bag", "--bag", str(bag), "--model", str(artifact), "--out", str(out),
               "--max-new-tokens", "4", *extra])
    assert rc == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def of(lines, kind, topic):
    return [d for d in lines if d["kind"] == kind and d["topic"] == topic]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_bag_replay_answers_every_frame_of_every_topic(storage, tiny_artifact, tmp_path):
    frames = {"/cam0/image_raw": [image_msg(scene(48, 64, seed=i), "rgb8", sec=100 + i, pad=4) for i in range(4)],
              "/cam1/image_raw/compressed": [compressed_msg(scene(40, 56, seed=9 + i), "jpeg", sec=200 + i)
                                             for i in range(4)]}
    messages = [(t, SEC + i * SEC // 10 + k, m) for i in range(4) for k, (t, ms) in enumerate(frames.items())
                for m in [ms[i]]]
    bag = write_bag(tmp_path / f"bag_{storage}", storage, messages)
    lines = replay(bag, tiny_artifact, tmp_path / "out.jsonl", "--max-speed")

    runtime = Runtime.load(tiny_artifact)
    for topic, msgs in frames.items():
        answers, latency = of(lines, "answer", topic), of(lines, "latency", topic)
        assert [a["stamp"]["sec"] for a in answers] == [m.header.stamp.sec for m in msgs]  # all, in order
        assert len(latency) == len(msgs) and all(r["dropped"] == 0 for r in latency)
        assert all(d["published_on"] == f"{topic}/{d['kind']}" for d in answers + latency)
        # the same answers as the runtime gives the same frames directly
        stream = runtime.open_stream(topic)
        expected = [stream.ask(to_bgr(as_message(m)), "What is in the image?", 4).text for m in msgs]
        assert [a["text"] for a in answers] == expected
    assert not [d for d in lines if d["kind"] == "error"]


def test_bad_frames_are_errors_on_their_topic_and_the_others_keep_answering(tiny_artifact, tmp_path):
    good = [image_msg(scene(seed=i), "bgr8", sec=10 + i) for i in range(3)]
    compressed = [compressed_msg(scene(seed=5), "jpeg", sec=20),
                  compressed_msg(scene(), "jpeg", sec=21, data=b"\xff\xd8\xff\xe0 corrupt jpeg"),
                  compressed_msg(scene(seed=6), "png", sec=22)]
    odd = image_msg(scene(seed=7), "bgr8", sec=30)
    odd.encoding = "yuv422"
    raw = [odd, image_msg(scene(seed=8), "mono8", sec=31)]
    messages = [("/cam0/image_raw", SEC + i, m) for i, m in enumerate(good)]
    messages += [("/cam1/image_raw/compressed", SEC + 10 + i, m) for i, m in enumerate(compressed)]
    messages += [("/cam2/image_raw", SEC + 20 + i, m) for i, m in enumerate(raw)]
    bag = write_bag(tmp_path / "bad", "mcap", sorted(messages, key=lambda x: x[1]))
    lines = replay(bag, tiny_artifact, tmp_path / "out.jsonl", "--max-speed")

    assert [a["stamp"]["sec"] for a in of(lines, "answer", "/cam0/image_raw")] == [10, 11, 12]
    assert [a["stamp"]["sec"] for a in of(lines, "answer", "/cam1/image_raw/compressed")] == [20, 22]
    assert [a["stamp"]["sec"] for a in of(lines, "answer", "/cam2/image_raw")] == [31]
    (e1,) = of(lines, "error", "/cam1/image_raw/compressed")
    (e2,) = of(lines, "error", "/cam2/image_raw")
    print(e1["error"], "|", e2["error"])
    assert e1["stage"] == "conversion" and "JPEG header truncated" in e1["error"] and "/cam1/image_raw/compressed" in e1["error"]
    assert "yuv422" in e2["error"] and "/cam2/image_raw" in e2["error"]
    assert of(lines, "latency", "/cam1/image_raw/compressed")[-1]["counters"]["conversion_errors"] == 1
    assert not of(lines, "error", "/cam0/image_raw")


def test_recorded_pace_and_answer_set(tiny_artifact, tmp_path):
    msgs = [("/cam0/image_raw", SEC + i * SEC // 4, image_msg(scene(seed=i), "rgb8", sec=i)) for i in range(3)]
    bag = write_bag(tmp_path / "paced", "sqlite3", msgs)
    t0 = time.monotonic()
    lines = replay(bag, tiny_artifact, tmp_path / "out.jsonl", "--answers", "yes,no", "--prompt", "Is it red?")
    elapsed = time.monotonic() - t0
    answers = of(lines, "answer", "/cam0/image_raw")
    assert elapsed >= 0.5  # the last frame is released 0.5 s after the first
    assert [a["stamp"]["sec"] for a in answers] == [0, 1, 2]
    for a in answers:
        assert a["text"] in ("yes", "no") and set(a["log_probs"]) == {"yes", "no"}
        assert a["text"] == max(a["log_probs"], key=a["log_probs"].get) and 0.5 <= a["probability"] <= 1.0
        assert np.isfinite(list(a["log_probs"].values())).all()


def test_missing_topic_names_the_bag_topics(tiny_artifact, tmp_path, capsys):
    bag = write_bag(tmp_path / "one", "mcap", [("/cam0/image_raw", SEC, image_msg(scene(), "rgb8"))])
    rc = main(["ros", "--transport", "bag", "--bag", str(bag), "--model", str(tiny_artifact), "--out",
               str(tmp_path / "o.jsonl"), "--topics", "/front/image_raw"])
    err = capsys.readouterr().err
    assert rc == 2 and "/front/image_raw" in err and "/cam0/image_raw" in err, err


def test_bad_artifact_is_a_clear_error(tmp_path, capsys):
    bag = write_bag(tmp_path / "one", "sqlite3", [("/cam0/image_raw", SEC, image_msg(scene(), "rgb8"))])
    rc = main(["ros", "--transport", "bag", "--bag", str(bag), "--model", str(tmp_path / "no_such_artifact"),
               "--out", str(tmp_path / "o.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and "no_such_artifact" in err, err


def test_bag_replay_writes_actions_and_twists_into_an_output_bag(head_artifact, tmp_path):
    """Default (ask) mode with heads: answers as before, plus per frame a labelled Float32MultiArray on
    <topic>/action and, for the Twist source (the first topic), one Twist per answered frame; in the JSON lines and
    in a ROS 2 bag that rosbags reads back."""
    from rosbags.rosbag2 import Reader

    from .conftest import HEAD_VALUES
    from .rosmsgs import TYPESTORE

    topics = ("/cam0/image_raw", "/cam1/image_raw/compressed")
    frames = {topics[0]: [image_msg(scene(48, 64, seed=i), "rgb8", sec=100 + i) for i in range(3)],
              topics[1]: [compressed_msg(scene(40, 56, seed=7 + i), "png", sec=200 + i) for i in range(2)]}
    messages = sorted(((t, SEC + i * SEC // 10 + k, m) for k, (t, ms) in enumerate(frames.items())
                       for i, m in enumerate(ms)), key=lambda x: x[1])
    bag = write_bag(tmp_path / "in", "mcap", messages)
    out_bag = tmp_path / "out_bag"
    lines = replay(bag, head_artifact, tmp_path / "out.jsonl", "--max-speed", "--prompt", "Where is the target?",
                   "--out-bag", str(out_bag), "--twist", "/cmd_vel", "--twist-map", "linear.x=0.5*distance",
                   "angular.z=-2.0*bearing", "--max-angular", "0.8")

    runtime = Runtime.load(head_artifact, max_streams=2)
    streams = {t: runtime.open_stream(t) for t in topics}
    expected = {t: [streams[t].act(to_bgr(as_message(m)), "Where is the target?").outputs for m in ms]
                for t, ms in frames.items()}
    with Reader(out_bag) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        recorded = {}
        for conn, _, raw in reader.messages():
            recorded.setdefault(conn.topic, []).append(TYPESTORE.deserialize_cdr(raw, conn.msgtype))
    assert types[f"{topics[0]}/action"] == "std_msgs/msg/Float32MultiArray"
    assert types["/cmd_vel"] == "geometry_msgs/msg/Twist" and types[f"{topics[0]}/answer"] == "std_msgs/msg/String"
    for t in topics:
        arrays = recorded[f"{t}/action"]
        assert len(arrays) == len(frames[t])  # one per frame, in order (replay is lossless)
        for arr, want in zip(arrays, expected[t]):
            assert [(d.label, d.size, d.stride) for d in arr.layout.dim] == [("bearing,distance", 2, 2)]
            err = np.abs(arr.data - np.array([want[n] for n in HEAD_VALUES])).max()
            print(t, arr.data.tolist(), f"max abs err vs Stream.act {err:.2e}")
            assert err <= 1e-5
        answers = [json.loads(m.data) for m in recorded[f"{t}/answer"]]
        assert [a["stamp"]["sec"] for a in answers] == [m.header.stamp.sec for m in frames[t]]
        assert all(a["text"] and list(a["outputs"]) == list(HEAD_VALUES) for a in answers)
    twists = recorded["/cmd_vel"]  # the first topic drives it; no watchdog on a recorded source
    assert len(twists) == len(frames[topics[0]])
    for tw, want in zip(twists, expected[topics[0]]):
        assert abs(tw.linear.x - min(0.5 * want["distance"], 0.5)) <= 1e-5  # --max-linear's default: 0.5 m/s
        assert abs(tw.angular.z - max(min(-2.0 * want["bearing"], 0.8), -0.8)) <= 1e-5
        assert tw.linear.y == tw.linear.z == tw.angular.x == tw.angular.y == 0

    actions = [d for d in lines if d["kind"] == "action"]  # the JSON lines carry the same
    assert sum(d["published_on"] == f"{topics[0]}/action" for d in actions) == 3
    assert all(d["layout"]["dim"][0]["label"] == "bearing,distance" for d in actions)
    assert len([d for d in lines if d["kind"] == "twist"]) == 3
    latency = of(lines, "latency", topics[0])
    assert all(r["twist"]["status"] == "published" and r["counters"]["twists"] >= 1 for r in latency)
    assert latency[-1]["counters"]["watchdog_zero"] == 0
