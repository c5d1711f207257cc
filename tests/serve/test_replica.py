"""A serving replica without Ray: batching across callers, latest-frame-wins, snapshots, failures per stream."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from edge.runtime import Runtime
from edge.serve.protocol import FrameRequest, encode_frame
from edge.serve.options import ReplicaOptions
from edge.serve.replica import ReplicaCore

from .conftest import stream_items


def request(stream, frame, prompt, **kw):
    return FrameRequest.parse(stream, {**encode_frame(frame), "prompt": prompt, **kw})


@pytest.fixture(scope="module")
def core(serve_artifact):
    c = ReplicaCore("replica-t", serve_artifact, ReplicaOptions(max_streams=8, threads=1, snapshot_every=2))
    yield c
    c.stop()


@pytest.fixture(scope="module")
def local(serve_artifact):
    return Runtime.load(serve_artifact, max_streams=8, threads=1)


def test_concurrent_callers_are_batched_and_equal_the_local_runtime(core, local):
    names = [f"b{i}" for i in range(4)]
    for n in names:
        core.open(n, "reset")
    data = {n: stream_items(i, 3) for i, n in enumerate(names)}
    batches0 = core.batches

    def run(n):
        return [core.submit(request(n, f, p, max_new_tokens=4)) for f, p in data[n]]

    taken = core.taken
    with ThreadPoolExecutor(4) as pool:
        with core._runtime_lock:  # the worker takes what is waiting and then waits: the first frames queue up
            futures = [pool.submit(run, n) for n in names]
            deadline = time.monotonic() + 30
            while core.taken - taken + len(core._pending) < 4 and time.monotonic() < deadline:
                time.sleep(0.01)
        results = dict(zip(names, (f.result() for f in futures)))
    want_streams = {n: local.open_stream("ref-" + n) for n in names}
    for n in names:
        for (f, p), got in zip(data[n], results[n]):
            assert got["status"] == "answered", got
            want = want_streams[n].ask(f, p, max_new_tokens=4)
            assert got["text"] == want.text and got["tokens"] == want.token_ids
            assert got["replica"] == "replica-t"
            assert got["outputs"].keys() == want.outputs.keys()
            np.testing.assert_allclose(list(got["outputs"].values()), list(want.outputs.values()), atol=1e-5)
    assert [r["frame"] for r in results["b0"]] == [1, 2, 3]
    assert core.batches - batches0 < 12  # 12 frames from 4 threads: some answered together
    assert max(r["batch_size"] for rs in results.values() for r in rs) >= 2  # 4 queued first frames: <= 2 batches
    for n in names:
        core.close(n)
        want_streams[n].close()


def test_a_newer_frame_supersedes_the_pending_one_and_stale_frames_drop(core):
    core.open("lfw", "reset")
    core.open("blocker", "reset")
    (f1, p1), (f2, p2) = stream_items(5, 2)
    out = {}

    def submit(key, stream, f, p):
        return threading.Thread(target=lambda: out.__setitem__(key, core.submit(request(stream, f, p))))

    def wait_until(condition):
        deadline = time.monotonic() + 10
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert condition()

    threads = []
    with core._runtime_lock:  # the worker takes the blocker's frame and waits for the runtime: lfw's frames queue
        taken = core.taken
        threads.append(submit(0, "blocker", f1, p1))
        threads[-1].start()
        wait_until(lambda: core.taken > taken)
        threads.append(submit(1, "lfw", f1, p1))
        threads[-1].start()
        wait_until(lambda: "lfw" in core._pending)
        threads.append(submit(2, "lfw", f2, p2))
        threads[-1].start()
        threads[1].join(10)
        assert out[1] == {"status": "dropped", "stream": "lfw", "replica": "replica-t", "reason": "superseded"}
    for t in threads:
        t.join(30)
    assert out[0]["status"] == "answered"
    assert out[2]["status"] == "answered" and out[2]["frame"] == 1
    stale = core.submit(request("lfw", f1, p1, capture_time=time.time() - 5, max_age_ms=100))
    assert stale["status"] == "dropped" and stale["reason"] == "stale"
    core.close("lfw")
    core.close("blocker")


def test_a_bad_frame_fails_its_stream_only(core):
    core.open("good", "reset")
    core.open("bad", "reset")
    (f, p), = stream_items(1, 1)
    body = {**encode_frame(f), "prompt": p}
    body["image"] = body["image"][:60] + "A" * 40  # a PNG signature, then garbage
    with ThreadPoolExecutor(2) as pool:
        bad = pool.submit(core.submit, FrameRequest.parse("bad", body))
        good = pool.submit(core.submit, request("good", f, p))
        bad, good = bad.result(), good.result()
    assert bad["status"] == "error" and bad["http"] == 422 and "bad" in bad["error"], bad
    assert good["status"] == "answered"
    again = core.submit(request("bad", f, p))  # the stream itself goes on
    assert again["status"] == "answered" and again["frame"] == 1
    unknown = core.submit(request("nobody", f, p))
    assert unknown["http"] == 404 and "nobody" in unknown["error"]
    core.close("good")
    core.close("bad")


def test_snapshots_come_every_nth_frame_and_restore_exactly(core, local):
    core.open("c", "continuous")
    items = stream_items(3, 5)
    results = [core.submit(request("c", f, p, max_new_tokens=3)) for f, p in items[:4]]
    assert [("snapshot" in r) for r in results] == [False, True, False, True]  # snapshot_every=2
    snap = results[-1]["snapshot"]
    state = core.state("c")
    assert snap["frame"] == state["frame"] == 4
    np.testing.assert_array_equal(snap["ssm"], state["ssm"])
    np.testing.assert_array_equal(snap["conv"], state["conv"])
    # the stream moves: closed here, opened from its snapshot (as on another replica), it answers the 5th frame
    # as a stream that never moved does
    core.close("c")
    assert core.runtime.pool.in_use == 0  # the slot is free
    out = core.open("c", "continuous", snapshot={"conv": snap["conv"], "ssm": snap["ssm"]}, frames=4)
    assert out["restored"]
    np.testing.assert_array_equal(core.state("c")["ssm"], snap["ssm"])
    fifth = core.submit(request("c", *items[4], max_new_tokens=3))
    ref = local.open_stream("ref-c", "continuous")
    for f, p in items[:4]:
        ref.ask(f, p, max_new_tokens=3)
    want = ref.ask(*items[4], max_new_tokens=3)
    assert fifth["frame"] == 5 and fifth["text"] == want.text
    np.testing.assert_allclose(core.state("c")["ssm"], ref.state[1][0], atol=1e-5)
    core.close("c")
    ref.close()


def test_a_wrong_snapshot_is_refused_and_leaves_no_stream(core):
    spec = core.runtime.manifest.state
    with pytest.raises(Exception, match="snap"):
        core.open("w", "continuous", snapshot={"conv": np.zeros((1, 2, 3), np.float32),
                                               "ssm": np.zeros(spec.ssm_shape, np.float32)})
    assert "w" not in core.runtime.streams and core.runtime.pool.in_use == 0


def test_ping_says_when_the_worker_is_gone(serve_artifact):
    c = ReplicaCore("replica-p", serve_artifact, ReplicaOptions(max_streams=2, threads=1))
    assert c.ping() == {"replica": "replica-p", "ok": True, "failure": None}
    c.open("s")
    c.runtime.answer = None  # the worker's own machinery breaks (not a frame's fault)
    (f, p), = stream_items(0, 1)
    out = c.submit(request("s", f, p))
    assert out["status"] == "error" and out["http"] == 503 and "worker failed" in out["error"]
    assert c.ping()["ok"] is False and "TypeError" in c.ping()["failure"]
    again = c.submit(request("s", f, p))  # refused at once, not waiting for a worker that is gone
    assert again["http"] == 503
    c.stop()
