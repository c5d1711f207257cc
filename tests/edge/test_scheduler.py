"""Latest-frame-wins scheduling, deadlines, rate limits; constant memory in continuous mode."""

import threading
import time

import numpy as np
import pytest

from edge.errors import StreamError
from edge.runtime import Runtime
from edge.scheduler import FrameScheduler

PROMPT = "What is in the image?"


@pytest.fixture
def runtime(tiny_artifact):
    return Runtime.load(tiny_artifact, max_streams=4, threads=1)


def test_latest_frame_wins_under_overload(runtime, frames):
    """100 frames per stream, one every ~1 ms, while an answer takes several ms: the worker answers only the
    newest frame each time, counts every other one as dropped, and never holds more than one per stream."""
    sched = FrameScheduler(runtime, PROMPT, max_new_tokens=4)
    for name in ("left", "right"):
        sched.add_stream(name)
    answered, stop = [], threading.Event()
    worker = threading.Thread(target=sched.serve, args=(stop, answered.append))
    worker.start()
    submitted = {"left": [], "right": []}
    try:
        for i in range(100):
            for name in submitted:
                ts = time.time()
                submitted[name].append(ts)
                sched.submit(name, frames[i % 2], timestamp=ts)
            time.sleep(0.001)
        deadline = time.time() + 30
        while sched.pending() and time.time() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        worker.join(5)
    assert not worker.is_alive()
    for name, stamps in submitted.items():
        c = sched.stats[name]
        got = [a.profile.capture_ts for a in answered if a.stream == name]
        print(f"{name}: answered {c.answered}, superseded {c.superseded}, stale {c.stale}")
        assert c.submitted == 100 and c.answered + c.superseded + c.stale == 100
        assert 0 < c.answered < 100 and c.superseded > 0
        assert got == sorted(got) and set(got) <= set(stamps) and got[-1] == stamps[-1]  # the newest is answered
        assert sum(a.profile.dropped for a in answered if a.stream == name) == c.superseded
    assert sched.peak_pending <= 2  # bounded: one pending frame per stream


def test_stale_frames_are_dropped_not_answered(runtime, frames):
    sched = FrameScheduler(runtime, PROMPT, max_new_tokens=2, max_age_ms=100)
    sched.add_stream("cam")
    sched.submit("cam", frames[0], timestamp=time.time() - 1.0)
    assert sched.run_once() == [] and sched.stats["cam"].stale == 1 and sched.pending() == 0
    sched.submit("cam", frames[0])
    (ans,) = sched.run_once()
    assert ans.profile.age_ms < 100 + 1e3 and sched.stats["cam"].answered == 1


def test_rate_limit_keeps_the_newest_frame_waiting(runtime, frames):
    sched = FrameScheduler(runtime, PROMPT, max_new_tokens=2, min_interval_ms=60_000)
    sched.add_stream("cam")
    sched.submit("cam", frames[0])
    assert len(sched.run_once()) == 1
    sched.submit("cam", frames[1])
    sched.submit("cam", frames[2])
    assert sched.run_once() == [] and sched.pending() == 1 and sched.stats["cam"].superseded == 1


def test_batches_streams_and_isolates_bad_frames(runtime, frames):
    sched = FrameScheduler(runtime, PROMPT, max_new_tokens=3)
    for name in ("a", "b", "broken"):
        sched.add_stream(name)
    with pytest.raises(StreamError, match="not scheduled"):
        sched.submit("nope", frames[0])
    for _ in range(3):
        sched.submit("a", frames[0])
        sched.submit("b", frames[1])
        sched.submit("broken", frames[0][:, :, 0])  # [H, W]: not a colour image
        answers = sched.run_once()
        assert sorted(a.stream for a in answers) == ["a", "b"] and all(a.profile.batch_size == 2 for a in answers)
    assert sched.stats["broken"].errors == 3 and "'broken'" in sched.errors["broken"][-1]
    assert sched.stats["a"].answered == sched.stats["b"].answered == 3


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="needs /proc")
def test_continuous_mode_memory_is_constant(tiny_artifact, frames):
    """2,000 frames on a continuous stream: the state stays one slab and the process does not grow."""
    rt = Runtime.load(tiny_artifact, max_streams=1, threads=1)
    cam = rt.open_stream("cam", mode="continuous")
    state_bytes = rt.bytes_per_stream
    for i in range(200):  # warm-up: allocator pools, ORT arenas, tokenizer cache
        cam.ask(frames[i % 4], PROMPT, max_new_tokens=2)
    before = _rss_bytes()
    for i in range(1800):
        cam.ask(frames[i % 4], PROMPT, max_new_tokens=2)
    growth = _rss_bytes() - before
    conv, ssm = cam.state
    print(f"RSS growth over 1,800 frames after warm-up: {growth / 2**20:.2f} MiB")
    assert growth < 2 * 2**20
    assert conv.nbytes + ssm.nbytes == state_bytes == rt.bytes_per_stream and cam.stats.answered == 2000
    assert np.isfinite(ssm).all()


def test_blocking_submit_is_lossless_and_tags_come_back(runtime, frames):
    """Recorded sources: ``block=True`` waits for the stream's previous frame to be taken (nothing superseded);
    a wait that times out submits nothing; each answer carries its frame's tag; wait_idle sees the end."""
    sched = FrameScheduler(runtime, PROMPT, max_new_tokens=2)
    sched.add_stream("bag")
    assert sched.submit("bag", frames[0], tag="f0", block=True, timeout=0.1)
    assert not sched.submit("bag", frames[1], tag="f1", block=True, timeout=0.05)  # f0 not taken yet
    assert sched.stats["bag"].submitted == 1 and sched.stats["bag"].superseded == 0
    assert not sched.wait_idle(timeout=0.01)
    answered, stop = [], threading.Event()
    worker = threading.Thread(target=sched.serve, args=(stop, answered.append))
    worker.start()
    try:
        for i in range(1, 6):
            assert sched.submit("bag", frames[i % 2], tag=f"f{i}", block=True, timeout=30)
        assert sched.wait_idle(timeout=30)
    finally:
        stop.set()
        worker.join(5)
    assert [a.tag for a in answered] == [f"f{i}" for i in range(6)]
    assert sched.stats["bag"].superseded == 0 and sched.stats["bag"].answered == 6


def test_answer_set_mode_scores_instead_of_decoding(runtime, frames):
    sched = FrameScheduler(runtime, PROMPT, answers=["yes", "no"])
    sched.add_stream("a")
    sched.submit("a", frames[0], tag=7)
    (ans,) = sched.run_once()
    direct = runtime.open_stream("direct").choose(frames[0], PROMPT, ["yes", "no"])
    assert ans.tag == 7 and ans.text == direct.answer and ans.token_ids == []
    assert ans.choice.log_probs == pytest.approx(direct.log_probs, abs=1e-5)
    sched.submit("a", np.zeros((4, 4), np.uint8))  # a bad frame fails on its stream, through on_error
    errors = []
    assert sched.run_once(on_error=lambda name, e: errors.append((name, str(e)))) == []
    assert errors and errors[0][0] == "a" and sched.stats["a"].errors == 1


def test_act_mode_needs_heads_and_excludes_answer_sets(runtime):
    """The control path (act=True: heads' outputs, no decoding) is refused where it cannot run; it is exercised with
    an artifact with heads by the ROS node's tests (tests/ros_bridge/test_dds_actions.py, equal to Stream.act)."""
    with pytest.raises(ValueError, match="act: artifact .* has no action heads"):
        FrameScheduler(runtime, PROMPT, act=True)
    with pytest.raises(ValueError, match="act .* and answers .* exclude each other"):
        FrameScheduler(runtime, PROMPT, act=True, answers=["yes", "no"])
