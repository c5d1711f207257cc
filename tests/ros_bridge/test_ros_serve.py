"""``cobra-edge ros --serve URL``: camera topics answered by the serve application (edge/serve/remote.py) instead of a
local model. A bag with two camera topics replayed by two nodes at once (two robots sharing one service of two
replicas) gives every frame of both topics the answers a local runtime gives, and with ``--act`` the same action
arrays; RemoteRuntime.answer returns a failed request's error (HTTP 4xx, a dropped frame, a bad frame, no
connection) instead of raising, and the other requests are answered; an unreachable URL stops the node at start."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from .rosmsgs import compressed_msg, image_msg, write_bag  # skips without rosbags

from edge.batch import Request
from edge.cli import main
from edge.errors import FrameError
from edge.serve.client import ServeClient
from edge.serve.remote import RemoteError, RemoteRuntime, ServeUnavailable, remote_stream_id
from edge.world.items import make_item
from edge.world.questions import SINGLE_FRAME

SEC = 1_000_000_000
TOPICS = ("/cam0/image_raw", "/cam1/image_raw/compressed")
FRAMES = 4
TOKENS = 4
PROMPT = "What colour is the circle?"
ROOT = Path(__file__).resolve().parents[2]


def world_frame(stream: int, k: int) -> np.ndarray:
    """A frame of the synthetic world the embedded model was trained on (a quarter of its size: small bags)."""
    frame = make_item(SINGLE_FRAME[(stream + k) % len(SINGLE_FRAME)], (11, stream, k)).frames()[-1]
    return cv2.resize(frame, (frame.shape[1] // 4, frame.shape[0] // 4), interpolation=cv2.INTER_AREA)


def of(lines, kind, topic):
    return [d for d in lines if d["kind"] == kind and d["topic"] == topic]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def artifact() -> str:
    from edge.embedded import embedded_artifact

    art = embedded_artifact(say=lambda *a: None, unchecked_ok=True)
    return str(art)


@pytest.fixture(scope="module")
def service(artifact):
    """The serve application with 2 replicas on a loopback Ray cluster, for the whole module; always shut down."""
    pytest.importorskip("ray")
    pytest.importorskip("ray.serve")
    from edge.serve.app import local_service
    from edge.serve.options import ReplicaOptions, ServeOptions

    t0 = time.monotonic()
    with local_service(artifact, ServeOptions(replicas=2, replica=ReplicaOptions(max_streams=8, threads=1))) as url:
        print(f"service up at {url} in {time.monotonic() - t0:.1f} s")
        yield url


@pytest.fixture(scope="module")
def bag(tmp_path_factory) -> tuple[Path, dict]:
    """Two camera topics, raw rgb8 and compressed PNG, FRAMES frames each, interleaved."""
    frames = {TOPICS[0]: [image_msg(world_frame(0, i), "rgb8", sec=100 + i, pad=4) for i in range(FRAMES)],
              TOPICS[1]: [compressed_msg(world_frame(1, i), "png", sec=200 + i) for i in range(FRAMES)]}
    messages = [(t, SEC + i * SEC // 10 + k, ms[i]) for i in range(FRAMES) for k, (t, ms) in enumerate(frames.items())]
    return write_bag(tmp_path_factory.mktemp("serve_bag") / "bag", "mcap", messages), frames


def replay(bag_path, out, *source) -> list[dict]:
    rc = main(["ros", "--transport", "bag", "--bag", str(bag_path), "--out", str(out), "--max-speed",
               "--max-new-tokens", str(TOKENS), "--prompt", PROMPT, *source])
    assert rc == 0
    return [json.loads(line) for line in out.read_text().splitlines()]


def node_process(bag_path, out, url, name) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edge.cli", "ros", "--transport", "bag", "--bag", str(bag_path),
                             "--out", str(out), "--max-speed", "--max-new-tokens", str(TOKENS), "--prompt", PROMPT,
                             "--serve", url, "--serve-name", name], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def assert_every_frame_answered(lines, frames, kinds=("answer", "latency")):
    assert not [d for d in lines if d["kind"] == "error"], [d for d in lines if d["kind"] == "error"]
    for topic, msgs in frames.items():
        for kind in kinds:
            got = [d["stamp"]["sec"] for d in of(lines, kind, topic)]
            assert got == [m.header.stamp.sec for m in msgs], (topic, kind, got)  # all, in order


@pytest.mark.slow
def test_two_robots_replay_a_bag_through_the_service_and_answer_as_a_local_runtime(service, artifact, bag, tmp_path):
    bag_path, frames = bag
    t0 = time.monotonic()
    nodes = {name: (node_process(bag_path, tmp_path / f"{name}.jsonl", service, name), tmp_path / f"{name}.jsonl")
             for name in ("robot-a", "robot-b")}  # two robots, the same topic names, one service
    outputs = {name: p.communicate(timeout=300)[0] for name, (p, _) in nodes.items()}
    print(f"two nodes through the service: {time.monotonic() - t0:.1f} s")
    for name, (p, _) in nodes.items():
        assert p.returncode == 0, outputs[name]
        assert f"{name}:%2Fcam0%2Fimage_raw" in outputs[name], outputs[name]  # its stream ids on the service
    local = replay(bag_path, tmp_path / "local.jsonl", "--model", artifact)
    assert_every_frame_answered(local, frames)

    for name, (_, out) in nodes.items():
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        assert_every_frame_answered(lines, frames)
        for topic in TOPICS:
            texts = [a["text"] for a in of(lines, "answer", topic)]
            assert texts == [a["text"] for a in of(local, "answer", topic)], (name, topic)
            tokens = [a["tokens"] for a in of(lines, "answer", topic)]
            assert tokens == [a["tokens"] for a in of(local, "answer", topic)]
            latency = of(lines, "latency", topic)
            assert all(r["stages_ms"]["total"] > 0 and r["batch_size"] >= 1 and r["age_ms"] is not None
                       for r in latency)
            assert latency[-1]["counters"]["answered"] == FRAMES and latency[-1]["counters"]["errors"] == 0
        print(name, {t: [a["text"] for a in of(lines, "answer", t)] for t in TOPICS})
    # both nodes closed their streams on the service when they stopped
    assert not [s for s in ServeClient(service).streams() if s["stream"].startswith(("robot-a:", "robot-b:"))]


@pytest.mark.slow
def test_act_through_the_service_gives_the_local_action_arrays(service, artifact, bag, tmp_path):
    bag_path, frames = bag
    opts = ("--act", "--twist", "/cmd_vel", "--twist-map", "linear.x=0.5*distance", "angular.z=-1.0*bearing")
    remote = replay(bag_path, tmp_path / "remote.jsonl", "--serve", service, "--serve-name", "actor", *opts)
    local = replay(bag_path, tmp_path / "local.jsonl", "--model", artifact, *opts)
    assert_every_frame_answered(remote, frames, kinds=("latency",))
    assert not of(remote, "answer", TOPICS[0])  # --act: no text answers
    actions = {src: [d for d in lines if d["kind"] == "action"]
               for src, lines in (("remote", remote), ("local", local))}
    assert len(actions["remote"]) == len(actions["local"]) == FRAMES * len(TOPICS)
    for topic in TOPICS:
        got = [d for d in actions["remote"] if d["published_on"] == f"{topic}/action"]
        want = [d for d in actions["local"] if d["published_on"] == f"{topic}/action"]
        assert len(got) == len(want) == FRAMES
        for g, w in zip(got, want):
            assert g["layout"] == w["layout"]
            err = np.abs(np.array(g["data"]) - np.array(w["data"])).max()
            assert err <= 1e-5, (topic, g["data"], w["data"])
        for g, w in zip(of(remote, "latency", topic), of(local, "latency", topic)):  # the values by name, too
            assert list(g["outputs"]) == list(w["outputs"])
            assert list(g["outputs"].values()) == pytest.approx(list(w["outputs"].values()), abs=1e-5)
    twists = {src: [d for d in lines if d["kind"] == "twist"] for src, lines in (("remote", remote), ("local", local))}
    assert len(twists["remote"]) == FRAMES
    for g, w in zip(twists["remote"], twists["local"]):
        assert g["linear"]["x"] == pytest.approx(w["linear"]["x"], abs=1e-5)
        assert g["angular"]["z"] == pytest.approx(w["angular"]["z"], abs=1e-5)


@pytest.mark.slow
def test_answer_set_through_the_service_gives_the_local_probabilities(service, artifact, bag, tmp_path):
    bag_path, frames = bag
    opts = ("--answers", "yes,no")
    remote = replay(bag_path, tmp_path / "remote.jsonl", "--serve", service, *opts)
    local = replay(bag_path, tmp_path / "local.jsonl", "--model", artifact, *opts)
    assert_every_frame_answered(remote, frames)
    for topic in TOPICS:
        for g, w in zip(of(remote, "answer", topic), of(local, "answer", topic)):
            assert g["text"] == w["text"] and g["probability"] == pytest.approx(w["probability"], abs=1e-5)
            assert g["log_probs"] == pytest.approx(w["log_probs"], abs=1e-5)


@pytest.mark.slow
def test_remote_answer_returns_each_failure_and_answers_the_rest(service, bag):
    _, frames = bag
    frame = world_frame(0, 0)
    rt = RemoteRuntime.connect(service, namespace="unit")
    try:
        assert rt.manifest.root == service and rt.manifest.heads
        assert [v.name for h in rt.manifest.heads for v in h.values] == ["bearing", "distance", "visible", "blocked"]
        s = {n: rt.open_stream(n) for n in ("/good0", "/too_many_tokens", "/bad_frame", "/good1")}
        reqs = [Request(s["/good0"], frame, PROMPT, TOKENS, time.time()),
                Request(s["/too_many_tokens"], frame, PROMPT, 9999, time.time()),  # the service's 400
                Request(s["/bad_frame"], frame.astype(np.float32), PROMPT, TOKENS),  # cannot be sent
                Request(s["/good1"], frame, PROMPT, TOKENS, time.time(), act=True)]
        results = rt.answer(reqs)  # never raises
        assert results[0].text and results[0].stream == "/good0" and results[0].outputs is not None
        assert results[0].profile.total > 0 and results[0].profile.age_ms >= 0
        assert isinstance(results[1], RemoteError) and results[1].status == 400
        assert "/too_many_tokens" in str(results[1]) and "max_new_tokens" in str(results[1])
        assert isinstance(results[2], FrameError) and "/bad_frame" in str(results[2])
        assert results[3].text == "" and set(results[3].outputs) == {"bearing", "distance", "visible", "blocked"}
        assert s["/too_many_tokens"].stats.errors == 1 and s["/good0"].stats.answered == 1
        print("errors:", results[1], "|", results[2])

        # a batch goes as one request; a dropped reply is that request's error
        real, calls = rt.client.request, []

        def one_request_dropping_good1(method, path, body=None, raw=None):
            calls.append(path)
            status, out = real(method, path, body, raw)
            for r in out.get("results", []):
                if r.get("stream") == remote_stream_id("unit", "/good1"):
                    r.clear()
                    r.update(status="dropped", stream=remote_stream_id("unit", "/good1"), replica="replica-0",
                             reason="stale", http=200)
            return status, out
        rt.client.request = one_request_dropping_good1
        results = rt.answer([Request(s["/good0"], frame, PROMPT, TOKENS), Request(s["/good1"], frame, PROMPT, TOKENS)])
        rt.client.request = real
        assert calls == ["/v1/frames"]
        assert results[0].text and isinstance(results[1], RemoteError) and results[1].reason == "stale"
        assert "/good1" in str(results[1]) and "dropped" in str(results[1])

        # streams the service forgot, in one batch: each opened again and answered
        for n in ("/good0", "/good1"):
            ServeClient(service).close(s[n].remote_id)
        both = rt.answer([Request(s["/good0"], frame, PROMPT, TOKENS), Request(s["/good1"], frame, PROMPT, TOKENS)])
        assert [b.text for b in both] == [results[0].text] * 2

        # a stream the service forgot (expired, or the service restarted) is opened again and answered
        ServeClient(service).close(s["/good0"].remote_id)
        (again,) = rt.answer([Request(s["/good0"], frame, PROMPT, TOKENS)])
        assert again.text == results[0].text
        assert s["/good0"].remote_id in {x["stream"] for x in ServeClient(service).streams()}

        # answer-set scoring
        choice = s["/good0"].choose(frame, "Is there a circle?", ["yes", "no"])
        assert choice.answer in ("yes", "no") and set(choice.log_probs) == {"yes", "no"}

        # no connection: every request's error, nothing raised
        client = rt.client
        rt.client = ServeClient(f"http://127.0.0.1:{free_port()}", timeout_s=5)
        results = rt.answer([Request(s["/good0"], frame, PROMPT, TOKENS), Request(s["/good1"], frame, PROMPT, TOKENS)])
        rt.client = client
        assert all(isinstance(r, RemoteError) and r.status is None and "no answer from" in str(r) for r in results)
        assert "/good0" in str(results[0]) and "/good1" in str(results[1])
    finally:
        rt.close()
    assert not [x for x in ServeClient(service).streams() if x["stream"].startswith("unit:")]
    assert rt.answer([Request(s["/good0"], frame, PROMPT, TOKENS)])[0].__class__.__name__ == "StreamError"


def test_unreachable_service_stops_the_node_at_start(tmp_path, capsys):
    bag_path = write_bag(tmp_path / "one", "mcap", [(TOPICS[0], SEC, image_msg(world_frame(0, 0), "rgb8"))])
    url = f"http://127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    rc = main(["ros", "--transport", "bag", "--bag", str(bag_path), "--out", str(tmp_path / "o.jsonl"),
               "--serve", url])
    err = capsys.readouterr().err
    assert rc == 2 and url in err and "/v1/health" in err, err
    assert time.monotonic() - t0 < 15
    with pytest.raises(ServeUnavailable):
        RemoteRuntime.connect(url)


@pytest.mark.parametrize("extra, needle", [
    ((), "--model DIR"),
    (("--serve", "http://127.0.0.1:1", "--model", "m"), "--model"),
    (("--serve", "http://127.0.0.1:1", "--precision", "int8"), "--precision"),
    (("--serve", "http://127.0.0.1:1", "--on-nonfinite", "fail"), "--on-nonfinite"),
    (("--serve", "http://127.0.0.1:1", "--serve-name", "a/b"), "--serve-name"),
    (("--model", "m", "--serve-name", "robot"), "--serve-name goes with --serve"),
    (("--serve", "ftp://x"), "serve URL must look like"),
])
def test_serve_options_are_checked(extra, needle, tmp_path, capsys):
    bag_path = write_bag(tmp_path / "one", "mcap", [(TOPICS[0], SEC, image_msg(world_frame(0, 0), "rgb8"))])
    rc = main(["ros", "--transport", "bag", "--bag", str(bag_path), "--out", str(tmp_path / "o.jsonl"), *extra])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err, err
