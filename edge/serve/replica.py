"""One serving replica: a Runtime with its StatePool, answering the frames of the streams routed to it in batches.

Ray-free (the cluster wraps it in an actor, edge/serve/cluster.py), so it is tested and benchmarked on its own.

    core = ReplicaCore("replica-0", "artifacts/tiny", ReplicaOptions(max_streams=16))
    core.open("cam0", "continuous")
    core.submit(FrameRequest.parse("cam0", body))   # from any thread; blocks until answered, dropped or failed

Callers submit from their own threads (the actor is threaded); one worker thread takes every stream's newest
pending frame and answers them as one batch (edge.batch: one vision/projector call, one prefill per length, one
decode batch). Latest-frame-wins per stream, as in FrameScheduler: a frame that a newer one of its stream replaces
before its turn comes back ``dropped`` ("superseded"), one older than its ``max_age_ms`` when its turn comes
``dropped`` ("stale"). Answer-set requests (``answers``) are scored one at a time after the batch.

Snapshots: every ``snapshot_every`` answered frames of a continuous stream, the answer carries a copy of the
stream's state (``snapshot``: frame count, conv, ssm), which the router keeps in Ray's object store; ``open(...,
snapshot=...)`` restores one on the replica a stream moves to. Nothing here raises into the caller for a frame's
sake: every result is a dict with ``status`` "answered", "dropped" or "error" (with ``http`` and ``error``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..batch import Request
from ..errors import StreamError, as_stream_error, log_unexpected
from ..runtime import Answer, Runtime
from ..state import StateSnapshot
from .options import ReplicaOptions
from .protocol import FrameRequest, answer_json, dropped_json, error_body

log = logging.getLogger("cobra_edge.serve")


@dataclass
class _Job:
    req: FrameRequest
    frame: np.ndarray
    arrived: float  # time.time()
    done: threading.Event = field(default_factory=threading.Event)
    result: dict | None = None

    def finish(self, result: dict) -> None:
        self.result = result
        self.done.set()


class ReplicaCore:
    def __init__(self, name: str, artifact: str, options: ReplicaOptions | None = None):
        self.name = name
        self.options = options or ReplicaOptions()
        o = self.options
        self.runtime = Runtime.load(artifact, max_streams=o.max_streams, threads=o.threads, precision=o.precision,
                                    device=o.device)
        self.frames: dict[str, int] = {}  # frames answered per stream (counting those before a move)
        self._pending: dict[str, _Job] = {}
        self._lock = threading.Lock()  # the pending frames
        self._ready = threading.Condition(self._lock)
        self._runtime_lock = threading.Lock()  # the runtime's streams and pool: a batch, an open, a close
        self._stop = threading.Event()
        self.batches = 0
        self.taken = 0  # frames the worker has taken into batches
        self.failure: BaseException | None = None
        self._worker = threading.Thread(target=self._serve, name=f"cobra-edge-{name}", daemon=True)
        self._worker.start()

    # streams

    def open(self, stream: str, mode: str = "reset", snapshot: dict | None = None, frames: int = 0) -> dict:
        """Open ``stream`` here (its state zero, or ``snapshot``'s: {"conv", "ssm"} as taken by a replica);
        ``frames``: its answered-frame count so far (a stream moved from another replica keeps counting)."""
        with self._runtime_lock:
            s = self.runtime.open_stream(stream, mode)
            try:
                if snapshot is not None:
                    s.restore(StateSnapshot(np.asarray(snapshot["conv"]), np.asarray(snapshot["ssm"]),
                                            self.runtime.manifest.state))
            except Exception:
                s.close()
                raise
            self.frames[stream] = frames
        return {"stream": stream, "replica": self.name, "mode": mode, "restored": snapshot is not None}

    def close(self, stream: str) -> dict:
        """Close ``stream`` and free its slot; a frame of it still pending comes back as an error."""
        with self._lock:
            job = self._pending.pop(stream, None)
        with self._runtime_lock:
            s = self.runtime.streams.get(stream)
            if s is not None:
                s.close()
            self.frames.pop(stream, None)
        if job is not None:
            job.finish(self._error(StreamError(f"stream {stream!r} was closed before its frame's turn"), stream))
        return {"stream": stream, "closed": s is not None}

    def state(self, stream: str) -> dict:
        """A copy of ``stream``'s state: {"frame", "conv", "ssm"} (diagnostics and tests)."""
        with self._runtime_lock:
            s = self._stream(stream)
            snap = s.snapshot()
            return {"frame": self.frames[stream], "conv": snap.conv, "ssm": snap.ssm}

    def info(self) -> dict:
        rt = self.runtime
        return {"replica": self.name, "pid": os.getpid(), "streams": sorted(rt.streams),
                "slots_in_use": rt.pool.in_use, "slots": rt.pool.capacity, "batches": self.batches,
                "rss_bytes": _rss_bytes(), "bytes_per_stream": rt.bytes_per_stream,
                "model": rt.manifest.model.get("name") if isinstance(rt.manifest.model, dict) else None,
                "heads": [{"name": h.name, "values": [{"name": v.name, "unit": v.unit, "lo": v.lo, "hi": v.hi}
                                                      for v in h.values]} for h in rt.manifest.heads],
                "failure": None if self.failure is None else repr(self.failure)}

    def ping(self) -> dict:
        """Alive, and whether its worker still answers (a worker that failed makes the router replace this replica:
        its process lives, but no frame would be answered)."""
        return {"replica": self.name, "ok": self.failure is None and self._worker.is_alive(),
                "failure": None if self.failure is None else repr(self.failure)}

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._ready.notify_all()

    # frames

    def submit(self, req: FrameRequest, timeout_s: float = 300.0) -> dict:
        """Answer one frame; blocks its caller's thread until its batch is done. -> a result dict (module doc)."""
        name = req.stream
        try:
            frame = req.decode(self.options.max_pixels)
        except Exception as e:
            return self._error(as_stream_error(e, name, "decoding the frame"), name)
        job = _Job(req, frame, time.time())
        with self._lock:
            if self.failure is not None:
                return self._error(RuntimeError(f"replica {self.name}'s worker failed: {self.failure!r}"), name, 503)
            if name not in self.runtime.streams:
                return self._error(StreamError(f"stream {name!r} is not open on replica {self.name}"), name, 404)
            old = self._pending.get(name)
            self._pending[name] = job
            self._ready.notify()
        if old is not None:
            old.finish(dropped_json(name, self.name, "superseded"))
        if not job.done.wait(timeout_s):
            return self._error(TimeoutError(f"stream {name!r}: no answer from replica {self.name} within "
                                            f"{timeout_s:.0f} s"), name, 503)
        return job.result

    def _serve(self) -> None:
        jobs: list[_Job] = []
        try:
            while not self._stop.is_set():
                with self._lock:
                    if not self._pending:
                        self._ready.wait(0.5)
                        continue
                    names = list(self._pending)[: self.options.max_batch]
                    jobs = [self._pending.pop(n) for n in names]
                    self.taken += len(jobs)
                with self._runtime_lock:
                    self._answer(jobs)
                self.batches += 1
        except BaseException as e:  # the worker itself: every waiter is told, and the replica refuses new frames
            log_unexpected(e, f"replica {self.name}'s worker")
            with self._lock:
                self.failure = e
                left = [j for j in jobs if not j.done.is_set()] + list(self._pending.values())
                self._pending.clear()
            for job in left:
                job.finish(self._error(RuntimeError(f"replica {self.name}'s worker failed: {e!r}"), job.req.stream,
                                       503))

    def _answer(self, jobs: list[_Job]) -> None:
        now = time.time()
        fresh = []
        for job in jobs:
            r = job.req
            t0 = r.capture_time if r.capture_time is not None else job.arrived
            if r.max_age_ms is not None and (now - t0) * 1e3 > r.max_age_ms:
                job.finish(dropped_json(r.stream, self.name, "stale"))
            elif r.stream not in self.runtime.streams:
                job.finish(self._error(StreamError(f"stream {r.stream!r} was closed"), r.stream, 404))
            else:
                fresh.append(job)
        streams = self.runtime.streams
        batched = [j for j in fresh if j.req.answers is None]
        results = self.runtime.answer([
            Request(streams[j.req.stream], j.frame, j.req.prompt, 0 if j.req.act else j.req.max_new_tokens,
                    j.req.capture_time, act=j.req.act) for j in batched])
        outcome = dict(zip(map(id, batched), results))
        for job in fresh:
            if job.req.answers is not None:
                outcome[id(job)] = self._choose(job)
        for job in fresh:
            job.finish(self._result(job.req.stream, outcome[id(job)]))

    def _choose(self, job: _Job):
        r = job.req
        try:
            c = self.runtime.streams[r.stream].choose(job.frame, r.prompt, r.answers, timestamp=r.capture_time)
        except Exception as e:
            return as_stream_error(e, r.stream, "answer-set scoring")
        return Answer(r.stream, c.answer, [], c.profile, choice=c)

    def _result(self, name: str, result) -> dict:
        if isinstance(result, Exception):
            return self._error(result, name)
        stream = self.runtime.streams[name]  # the worker holds the runtime lock: nothing closed it
        self.frames[name] += 1
        n = self.frames[name]
        out = answer_json(result, name, self.name, n)
        every = self.options.snapshot_every
        if stream.mode == "continuous" and every and n % every == 0:
            snap = stream.snapshot()
            out["snapshot"] = {"frame": n, "conv": snap.conv, "ssm": snap.ssm}
        return out

    def _stream(self, name: str):
        s = self.runtime.streams.get(name)
        if s is None:
            raise StreamError(f"stream {name!r} is not open on replica {self.name}")
        return s

    def _error(self, error: BaseException, stream: str, status: int | None = None) -> dict:
        code, body = error_body(error, stream)
        return {"status": "error", "http": status or code, **body, "replica": self.name}


def _rss_bytes() -> int:
    """This process's resident set (Linux /proc; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
