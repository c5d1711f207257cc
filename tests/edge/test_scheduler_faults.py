"""The scheduler's worker under faults: a callback that raises, a failure of the worker itself (waiters wake with
WorkerFailed instead of waiting forever), and a soak of 4 streams x 10,000 frames with 1 frame in 50 bad, where
every frame is accounted for and memory stays flat."""

import threading
import time

import numpy as np
import pytest

from edge.errors import WorkerFailed
from edge.profiling import rss_bytes
from edge.runtime import Runtime
from edge.scheduler import FrameScheduler

PROMPT = "What is in the image?"


@pytest.fixture
def runtime(tiny_artifact):
    return Runtime.load(tiny_artifact, max_streams=4, threads=1)


def _serve(sched, stop, **kw):
    t = threading.Thread(target=lambda: _swallow(sched.serve, stop, **kw), daemon=True)
    t.start()
    return t


def _swallow(fn, *a, **kw):
    try:
        fn(*a, **kw)
    except Exception:
        pass  # kept in sched.failure; the test reads it there


def test_a_callback_that_raises_is_counted_and_the_worker_goes_on(runtime, frames, caplog):
    sched = FrameScheduler(runtime, PROMPT, max_new_tokens=2)
    sched.add_stream("cam")
    seen = []

    def on_answer(a):
        seen.append(a)
        if len(seen) == 1:
            raise KeyError("injected: the publisher lost its topic")

    stop = threading.Event()
    worker = _serve(sched, stop, on_answer=on_answer)
    for f in frames[:3]:
        assert sched.submit("cam", f, block=True, timeout=10)
        assert sched.wait_idle(timeout=10)
    stop.set()
    worker.join(5)
    assert len(seen) == 3 and sched.stats["cam"].callback_errors == 1 and sched.failure is None
    assert "on_answer failed: KeyError" in caplog.text


def test_a_failure_of_the_worker_itself_wakes_every_waiter(runtime, frames, monkeypatch):
    sched = FrameScheduler(runtime, PROMPT, max_new_tokens=2)
    sched.add_stream("cam")
    real_take = sched._take
    calls = []

    def broken_take():
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected: scheduler state corrupted")
        return real_take()

    monkeypatch.setattr(sched, "_take", broken_take)
    stop = threading.Event()
    worker = _serve(sched, stop)
    sched.submit("cam", frames[0])  # pending; the worker's third look fails
    worker.join(5)
    assert not worker.is_alive() and isinstance(sched.failure, RuntimeError)
    t0 = time.monotonic()
    with pytest.raises(WorkerFailed, match="the inference worker stopped: RuntimeError: injected"):
        sched.submit("cam", frames[1], block=True, timeout=30)  # would otherwise wait its whole timeout
    with pytest.raises(WorkerFailed):
        sched.wait_idle(timeout=30)
    assert time.monotonic() - t0 < 1


def test_blocked_submitters_wake_when_the_worker_fails(runtime, frames, monkeypatch):
    """A lossless producer waiting for its previous frame to be taken when the worker dies gets WorkerFailed
    within moments, not after its timeout (this is what made bag replay hang)."""
    sched = FrameScheduler(runtime, PROMPT, max_new_tokens=2)
    sched.add_stream("cam")
    gate = threading.Event()

    def stuck_take():
        gate.wait(10)
        raise RuntimeError("injected")

    monkeypatch.setattr(sched, "_take", stuck_take)
    sched.submit("cam", frames[0])
    outcome = []

    def producer():
        try:
            sched.submit("cam", frames[1], block=True, timeout=60)
        except WorkerFailed as e:
            outcome.append(e)

    p = threading.Thread(target=producer)
    p.start()
    worker = _serve(sched, threading.Event())
    time.sleep(0.2)
    t0 = time.monotonic()
    gate.set()
    p.join(5)
    worker.join(5)
    assert outcome and time.monotonic() - t0 < 1


def test_scheduler_options_are_checked(runtime):
    for kw, match in [({"max_batch": 0}, "max_batch must be an int >= 1"),
                      ({"max_new_tokens": -1}, "max_new_tokens must be an int >= 0"),
                      ({"max_new_tokens": True}, "max_new_tokens must be an int"),
                      ({"max_age_ms": 0}, "max_age_ms must be a number > 0"),
                      ({"min_interval_ms": -5}, "min_interval_ms must be a number >= 0")]:
        with pytest.raises(ValueError, match=match):
            FrameScheduler(runtime, PROMPT, **kw)


def _bad_frames():
    """Every kind of bad frame a camera callback could hand over."""
    rng = np.random.default_rng(1)
    return [None, "not a frame", np.zeros((0, 4, 3), np.uint8), np.zeros((8, 8), np.uint8),
            np.zeros((8, 8, 4), np.uint8), rng.random((8, 8, 3)).astype(np.float32), np.full((8, 8, 3), np.nan),
            np.zeros((8, 8, 3), np.int16)]


@pytest.mark.slow
def test_soak_4_streams_10000_frames_each_1_in_50_bad(runtime):
    """40,000 frames through the scheduler (lossless submission, batches of up to 4), 1 in 50 of them bad and of
    mixed kinds: every good frame is answered, every bad one is an error of its stream, the counts add up exactly,
    and resident memory grows < 5 MiB after warm-up."""
    names = [f"cam{i}" for i in range(4)]
    sched = FrameScheduler(runtime, PROMPT, max_new_tokens=1, max_batch=4)
    for n in names:
        sched.add_stream(n, mode="continuous")
    rng = np.random.default_rng(0)
    good = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(8)]
    bad = _bad_frames()
    stop = threading.Event()
    answered = {n: 0 for n in names}
    errors = {n: 0 for n in names}
    worker = _serve(sched, stop, on_answer=lambda a: answered.__setitem__(a.stream, answered[a.stream] + 1),
                    on_error=lambda n, e: errors.__setitem__(n, errors[n] + 1), idle_wait_s=0.001)
    frames_per_stream, n_bad = 10_000, {n: 0 for n in names}
    rss = {}
    try:
        for i in range(frames_per_stream):
            for k, n in enumerate(names):
                if (i + 13 * k) % 50 == 0:
                    frame = bad[(i // 50 + k) % len(bad)]
                    n_bad[n] += 1
                else:
                    frame = good[(i + k) % len(good)]
                assert sched.submit(n, frame, block=True, timeout=30), f"{n} frame {i} not taken in 30 s"
            if i == 1000:
                assert sched.wait_idle(timeout=30)
                rss["warm"] = rss_bytes()
        assert sched.wait_idle(timeout=60)
        rss["end"] = rss_bytes()
    finally:
        stop.set()
        worker.join(10)
    growth = (rss["end"] - rss["warm"]) / 2**20
    print(f"RSS after warm-up {rss['warm'] / 2**20:.1f} MiB, at the end {rss['end'] / 2**20:.1f} MiB "
          f"(+{growth:.2f} MiB); bad frames {n_bad}")
    assert sched.failure is None
    for n in names:
        c = sched.stats[n]
        assert c.submitted == frames_per_stream
        assert (c.answered, c.errors, c.superseded, c.stale) == (frames_per_stream - n_bad[n], n_bad[n], 0, 0)
        assert c.finished == c.submitted  # submitted = answered + superseded + stale + errors
        assert (answered[n], errors[n]) == (c.answered, c.errors)
        assert runtime.streams[n].stats.errors == n_bad[n]
    assert growth < 5
