"""Fresh frames first: a scheduler that answers the newest frame of every stream, batched, and drops the rest.

    sched = FrameScheduler(runtime, prompt="Is the path clear?", max_age_ms=200, min_interval_ms=100)
    sched.submit("front", frame, timestamp)     # from camera callbacks, any thread; never blocks
    answers = sched.run_once()                  # from the worker: one batch of the newest frames
    sched.submit("front", frame, block=True)    # lossless replay (bags): wait until the previous frame is taken

Each stream holds at most ONE pending frame (latest-frame-wins): a newer frame replaces it and the older
one is counted as dropped ("superseded"). When its turn comes, a frame older than ``max_age_ms`` is dropped
("stale") rather than answered late. ``min_interval_ms`` limits how often a stream is answered (its newest
frame waits, still replaceable). Memory is bounded by the number of streams, whatever the input rate.
Errors stay with their stream: ``stats[name].errors`` and ``errors`` (the last few, per stream). Every frame
submitted is accounted for: submitted = answered + superseded + stale + errors + (pending or in flight).
With ``answers`` set, every frame is answered by answer-set scoring (``Stream.choose``) instead of decoding; with
``act`` set, by the control path (``Stream.act``: the action heads' outputs, no text decoded).

The worker (``serve``) never dies of a frame: failures inside a batch come back per stream (edge.batch), and an
exception from the ``on_answer`` / ``on_error`` callbacks is logged and counted on its stream. A failure of the
worker itself (the scheduler's own machinery) is kept in ``failure``, wakes every waiter, and makes ``submit`` and
``wait_idle`` raise ``WorkerFailed``: the caller stops instead of waiting forever for a worker that is gone.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

import logging

from .batch import Request
from .checks import as_count
from .errors import StreamError, WorkerFailed, as_stream_error, log_unexpected
from .runtime import Answer, Runtime

log = logging.getLogger("cobra_edge")


@dataclass
class StreamCounters:
    submitted: int = 0
    answered: int = 0
    superseded: int = 0  # replaced by a newer frame before its turn
    stale: int = 0  # older than max_age_ms when its turn came
    errors: int = 0
    callback_errors: int = 0  # answers or errors that on_answer / on_error failed to deliver (logged)
    last_answer_at: float = float("-inf")  # time.monotonic() of the last answer
    dropped_since_answer: int = 0

    @property
    def dropped(self) -> int:
        return self.superseded + self.stale

    @property
    def finished(self) -> int:
        """Frames whose fate is known: answered, dropped or failed (submitted - finished are pending/in flight)."""
        return self.answered + self.superseded + self.stale + self.errors


@dataclass
class _Pending:
    frame: object
    timestamp: float
    boxes: object = None
    tag: object = None


@dataclass
class FrameScheduler:
    runtime: Runtime
    prompt: str
    max_new_tokens: int = 16
    max_age_ms: float | None = None
    min_interval_ms: float | None = None
    max_batch: int = 8
    answers: list[str] | None = None  # answer set: score these instead of decoding (closed questions)
    act: bool = False  # the control path: the action heads' outputs (Answer.outputs), no text decoded
    stats: dict[str, StreamCounters] = field(default_factory=dict)
    errors: dict[str, deque] = field(default_factory=dict)
    peak_pending: int = 0  # most frames ever held at once (bounded by the number of streams)

    def __post_init__(self):
        self.max_new_tokens = as_count(self.max_new_tokens, "max_new_tokens", 0)
        self.max_batch = as_count(self.max_batch, "max_batch", 1)
        if self.act and self.answers is not None:
            raise ValueError("act (the heads' outputs, no text) and answers (answer-set scoring) exclude each other")
        if self.act and not self.runtime.manifest.heads:
            raise ValueError(f"act: artifact {self.runtime.manifest.root} has no action heads (export it with --heads)")
        for name in ("max_age_ms", "min_interval_ms"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not value >= (1e-9 if name == "max_age_ms" else 0)):
                raise ValueError(f"{name} must be a number {'> 0' if name == 'max_age_ms' else '>= 0'} or None, "
                                 f"got {value!r}")
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # a frame arrived
        self._taken = threading.Condition(self._lock)  # a frame left the pending set, or a batch finished
        self._in_flight = 0  # frames taken and not yet answered
        self.failure: BaseException | None = None  # why the worker stopped, when it failed (see serve)
        self._act: set[str] = set()  # streams in act mode

    def add_stream(self, name: str, mode: str = "reset", act: bool | None = None) -> None:
        """Schedule a new stream. ``act``: the control path for its frames (``Stream.act``: the action heads'
        outputs, no text), batched with the other streams' frames; the artifact must have heads. Default: the
        scheduler's ``act``."""
        act = self.act if act is None else act
        if act and not self.runtime.manifest.heads:
            raise StreamError(f"stream {name!r}: act mode needs action heads; artifact {self.runtime.manifest.root} "
                              "has none")
        self.runtime.open_stream(name, mode)
        if act:
            self._act.add(name)
        self.stats[name] = StreamCounters()
        self.errors[name] = deque(maxlen=8)

    def submit(self, name: str, frame, timestamp: float | None = None, boxes=None, tag=None,
               block: bool = False, timeout: float | None = None) -> bool:
        """Offer a frame (capture ``timestamp`` in time.time() seconds; now if None). ``tag`` comes back on its
        Answer. Never blocks on inference unless ``block``: then it first waits (up to ``timeout`` s) until the
        stream's previous frame has been taken, so nothing is superseded. Returns False, having submitted
        nothing, if that wait timed out."""
        if name not in self.stats:
            raise StreamError(f"stream {name!r} is not scheduled; add_stream({name!r}) first")
        with self._lock:
            self._check_worker()
            if block and not self._taken.wait_for(lambda: name not in self._pending or self.failure, timeout):
                return False
            self._check_worker()
            c = self.stats[name]
            c.submitted += 1
            if name in self._pending:
                c.superseded += 1
                c.dropped_since_answer += 1
            self._pending[name] = _Pending(frame, time.time() if timestamp is None else timestamp, boxes, tag)
            self.peak_pending = max(self.peak_pending, len(self._pending))
            self._ready.notify()
        return True

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no frame is pending or being answered (True), or ``timeout`` s passed (False)."""
        with self._lock:
            idle = self._taken.wait_for(lambda: (not self._pending and not self._in_flight) or self.failure, timeout)
            self._check_worker()
            return bool(idle)

    def _check_worker(self) -> None:
        if self.failure is not None:
            raise WorkerFailed(f"the inference worker stopped: {type(self.failure).__name__}: {self.failure}")

    def _take(self) -> list[tuple[str, _Pending, int]]:
        """The frames whose turn it is: fresh enough, and their stream outside its rate limit."""
        now_wall, now = time.time(), time.monotonic()
        taken = []
        with self._lock:
            for name in list(self._pending):
                c = self.stats[name]
                if self.min_interval_ms is not None and (now - c.last_answer_at) * 1e3 < self.min_interval_ms:
                    continue
                item = self._pending.pop(name)
                if self.max_age_ms is not None and (now_wall - item.timestamp) * 1e3 > self.max_age_ms:
                    c.stale += 1
                    c.dropped_since_answer += 1
                    continue
                taken.append((name, item, c.dropped_since_answer))
                c.dropped_since_answer = 0  # drops from now on belong to the stream's next answer
                if len(taken) == self.max_batch:
                    break
            self._in_flight += len(taken)
            self._taken.notify_all()
        return taken

    def run_once(self, on_error: Callable[[str, Exception], None] | None = None) -> list[Answer]:
        """Answer the newest frame of every stream whose turn it is, as one batch; [] when none is.
        A frame that fails is counted on its stream and given to ``on_error(stream, error)``."""
        taken = self._take()
        if not taken:
            return []
        try:
            results = self._answer(taken)
        finally:
            with self._lock:
                self._in_flight -= len(taken)
                self._taken.notify_all()
        answers = []
        done = time.monotonic()
        for (name, item, _), result in zip(taken, results):
            c = self.stats[name]
            if isinstance(result, Exception):
                c.errors += 1
                self.errors[name].append(str(result))
                if on_error:
                    self._deliver(name, on_error, name, result)
                continue
            c.answered += 1
            c.last_answer_at = done
            result.tag = item.tag
            answers.append(result)
        return answers

    def _answer(self, taken) -> list[Answer | Exception]:
        streams = self.runtime.streams
        acting = {n for n, _, _ in taken if n in self._act}
        batched = [(n, it, d) for n, it, d in taken if self.answers is None or n in acting]
        results = dict(zip([n for n, _, _ in batched], self.runtime.answer([
            Request(streams[n], it.frame, self.prompt, 0 if n in acting else self.max_new_tokens, it.timestamp,
                    it.boxes, dropped=d, act=n in acting) for n, it, d in batched])))
        for name, it, dropped in taken:  # scoring answers one frame at a time (its candidates are its batch)
            if name in results:
                continue
            try:
                choice = streams[name].choose(it.frame, self.prompt, self.answers, it.boxes, it.timestamp)
            except Exception as e:  # choose counted it on the stream (and logged what was not ours)
                results[name] = as_stream_error(e, name, "answer-set scoring")
                continue
            choice.profile.dropped = dropped
            results[name] = Answer(name, choice.answer, [], choice.profile, choice=choice)
        return [results[name] for name, _, _ in taken]

    def _deliver(self, name: str, callback: Callable, *args) -> None:
        """Call on_answer / on_error; an exception there is logged and counted on the stream, never raised."""
        try:
            callback(*args)
        except Exception as e:
            self.stats[name].callback_errors += 1
            log.error("stream %r: %s failed: %s: %s", name, getattr(callback, "__name__", "callback"),
                      type(e).__name__, e, exc_info=e)

    def serve(self, stop: threading.Event, on_answer: Callable[[Answer], None] | None = None,
              idle_wait_s: float = 0.05, on_error: Callable[[str, Exception], None] | None = None) -> None:
        """Worker loop: answer batches until ``stop`` is set (run it in a thread).

        A failure of the loop itself is recorded in ``failure`` (waiters wake and get WorkerFailed) and re-raised
        so the thread ends visibly; the caller decides to stop its process (CameraNode does, with exit code 3)."""
        try:
            while not stop.is_set():
                answers = self.run_once(on_error)
                if not answers:
                    with self._lock:
                        if not self._pending:
                            self._ready.wait(idle_wait_s)
                    if self.min_interval_ms is not None:  # pending frames may be waiting out their rate limit
                        time.sleep(min(idle_wait_s, self.min_interval_ms / 1e3 / 4))
                    continue
                if on_answer:
                    for a in answers:
                        self._deliver(a.stream, on_answer, a)
        except BaseException as e:
            log_unexpected(e, "the scheduler's worker")
            with self._lock:
                self.failure = e
                self._taken.notify_all()
                self._ready.notify_all()
            raise
