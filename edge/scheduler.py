"""Fresh frames first: a scheduler that answers the newest frame of every stream, batched, and drops the rest.

    sched = FrameScheduler(runtime, prompt="Is the path clear?", max_age_ms=200, min_interval_ms=100)
    sched.submit("front", frame, timestamp)     # from camera callbacks, any thread; never blocks
    answers = sched.run_once()                  # from the worker: one batch of the newest frames
    sched.submit("front", frame, block=True)    # lossless replay (bags): wait until the previous frame is taken

Each stream holds at most ONE pending frame (latest-frame-wins): a newer frame replaces it and the older
one is counted as dropped ("superseded"). When its turn comes, a frame older than ``max_age_ms`` is dropped
("stale") rather than answered late. ``min_interval_ms`` limits how often a stream is answered (its newest
frame waits, still replaceable). Memory is bounded by the number of streams, whatever the input rate.
Errors stay with their stream: ``stats[name].errors`` and ``errors`` (the last few, per stream).
With ``answers`` set, every frame is answered by answer-set scoring (``Stream.choose``) instead of decoding.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from engines.base import EngineError

from .batch import Request
from .errors import CobraEdgeError, StreamError
from .runtime import Answer, Runtime


@dataclass
class StreamCounters:
    submitted: int = 0
    answered: int = 0
    superseded: int = 0  # replaced by a newer frame before its turn
    stale: int = 0  # older than max_age_ms when its turn came
    errors: int = 0
    last_answer_at: float = float("-inf")  # time.monotonic() of the last answer
    dropped_since_answer: int = 0

    @property
    def dropped(self) -> int:
        return self.superseded + self.stale


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
    stats: dict[str, StreamCounters] = field(default_factory=dict)
    errors: dict[str, deque] = field(default_factory=dict)
    peak_pending: int = 0  # most frames ever held at once (bounded by the number of streams)

    def __post_init__(self):
        self._pending: dict[str, _Pending] = {}
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # a frame arrived
        self._taken = threading.Condition(self._lock)  # a frame left the pending set, or a batch finished
        self._in_flight = 0  # frames taken and not yet answered

    def add_stream(self, name: str, mode: str = "reset") -> None:
        self.runtime.open_stream(name, mode)
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
            if block and not self._taken.wait_for(lambda: name not in self._pending, timeout):
                return False
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
            return self._taken.wait_for(lambda: not self._pending and not self._in_flight, timeout)

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
                    on_error(name, result)
                continue
            c.answered += 1
            c.last_answer_at = done
            result.tag = item.tag
            answers.append(result)
        return answers

    def _answer(self, taken) -> list[Answer | Exception]:
        streams = self.runtime.streams
        if self.answers is None:
            return self.runtime.answer([Request(streams[n], it.frame, self.prompt, self.max_new_tokens, it.timestamp,
                                                it.boxes, dropped=d) for n, it, d in taken])
        results = []
        for name, it, dropped in taken:  # scoring answers one frame at a time (its candidates are its batch)
            try:
                choice = streams[name].choose(it.frame, self.prompt, self.answers, it.boxes, it.timestamp)
            except (CobraEdgeError, EngineError, TypeError) as e:  # what choose reports per stream
                results.append(e)
                continue
            choice.profile.dropped = dropped
            results.append(Answer(name, choice.answer, [], choice.profile, choice=choice))
        return results

    def serve(self, stop: threading.Event, on_answer: Callable[[Answer], None] | None = None,
              idle_wait_s: float = 0.05, on_error: Callable[[str, Exception], None] | None = None) -> None:
        """Worker loop: answer batches until ``stop`` is set (run it in a thread)."""
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
                    on_answer(a)
