"""A runtime whose streams live on the serve application: what ``cobra-edge ros --serve URL`` runs instead of a
local model, so many robots' camera nodes share one cluster (docs/serve.md, docs/ros2.md).

    rt = RemoteRuntime.connect("http://127.0.0.1:8000", namespace="robot7")   # /v1/health, then /v1/info
    sched = FrameScheduler(rt, prompt="Is the path clear?")                  # edge.scheduler, unchanged
    sched.add_stream("/cam0/image_raw")          # opens "robot7:%2Fcam0%2Fimage_raw" on the service
    ...
    rt.close()                                   # closes the streams on the service (their slots freed)

It stands in for edge.runtime.Runtime where FrameScheduler and ros_bridge.CameraNode use one: ``manifest``
(``heads`` and ``root`` = the URL, from /v1/info), ``open_stream``, ``streams``, ``answer(requests)`` and
``Stream.choose``. ``answer`` sends a batch's frames in one HTTP request (``POST /v1/frames``: one hop through the
cluster's proxy and ingress for all of them; the replicas batch frames of many streams and robots together), and
returns per request an
edge.runtime.Answer (text, token ids, the heads' values, a FrameProfile from the reply's ``stages_ms``,
``batch_size`` and ``age_ms``) or the exception that failed it (``RemoteError``: an HTTP error reply, a ``dropped``
reply, or no connection), never raising, as edge.batch does. Frames travel as PNG (lossless: the answers equal a
local runtime's) unless ``frame_format`` says "jpeg" (smaller, lossy) or "raw".

Stream ids on the service: the local name (a ROS topic) prefixed by the runtime's ``namespace`` (default:
``<hostname>-<pid>``), with '/' escaped, so two robots' ``/cam0/image_raw`` are two streams. A stream the service
no longer knows (404: it expired after its idle timeout, or the service restarted) is opened again and its frame
sent once more; its state starts fresh then (continuous mode: logged as a warning).

No Ray and no torch here: the standard library, numpy and edge.
"""

from __future__ import annotations

import http.client
import itertools
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from ..batch import Request
from ..errors import CobraEdgeError, FrameError, StreamError
from ..heads import HeadValue
from ..profile import FrameProfile
from ..runtime import Answer, StreamStats, check_new_stream
from ..scoring import Choice
from .client import ServeClient, ServeError
from .protocol import frame_body

log = logging.getLogger("cobra_edge.serve")

STAGE_FIELDS = ("preprocess", "vision", "projector", "prefill", "heads", "decode", "total")
_instances = itertools.count()
NETWORK_ERRORS = (OSError, http.client.HTTPException)  # refused, reset, timed out, a broken reply


class RemoteError(CobraEdgeError, RuntimeError):
    """A frame the service did not answer: ``status`` the HTTP status of its error reply (None: a ``dropped`` reply
    or no connection), ``reason`` "superseded" / "stale" for a dropped one. The message names the stream."""

    def __init__(self, message: str, stream: str | None = None, status: int | None = None,
                 reason: str | None = None):
        super().__init__(message)
        self.stream = stream
        self.status = status
        self.reason = reason


class ServeUnavailable(CobraEdgeError):
    """The URL does not answer as the serve application (``connect``: /v1/health or /v1/info failed)."""


@dataclass(frozen=True)
class RemoteHead:
    name: str
    values: tuple[HeadValue, ...]


@dataclass
class RemoteManifest:
    """What a runtime's users read of its manifest: the action heads, and ``root`` (here the service's URL)."""

    root: str
    heads: list[RemoteHead]
    model: dict = field(default_factory=dict)  # {"name": ...} when the service says
    info: dict = field(default_factory=dict)  # /v1/info as read at connect


def remote_stream_id(namespace: str, name: str) -> str:
    """The service's id of local stream ``name`` (a ROS topic): ``namespace:name`` with '%', '/', '\\' and NUL
    escaped (the API refuses '/', '\\' and NUL in ids), e.g. ``robot7:%2Fcam0%2Fimage_raw``."""
    escaped = name.replace("%", "%25").replace("/", "%2F").replace("\\", "%5C").replace("\0", "%00")
    return f"{namespace}:{escaped}" if namespace else escaped


class RemoteStream:
    """One local stream's counterpart on the service (made by ``RemoteRuntime.open_stream``)."""

    def __init__(self, runtime: "RemoteRuntime", name: str, remote_id: str, mode: str):
        self.runtime = runtime
        self.name = name
        self.remote_id = remote_id
        self.mode = mode
        self.stats = StreamStats()
        self.closed = False
        self._on_nonfinite = "reset"

    def __repr__(self) -> str:
        return f"RemoteStream({self.name!r} -> {self.remote_id!r} on {self.runtime.url})"

    @property
    def on_nonfinite(self) -> str:
        return self._on_nonfinite

    @on_nonfinite.setter
    def on_nonfinite(self, policy: str) -> None:
        """The service's runtimes apply their own policy, "reset" (a stream whose state stops being finite gets that
        frame's error and starts clean); "fail" cannot be kept from here."""
        if policy != "reset":
            raise StreamError(f"stream {self.name!r}: on_nonfinite {policy!r} is not available through the serve "
                              f"application ({self.runtime.url}), which resets such a stream's state; use 'reset'")
        self._on_nonfinite = policy

    def choose(self, frame_bgr: np.ndarray, prompt: str, answers: list[str], boxes=None,
               timestamp: float | None = None) -> Choice:
        """Answer-set scoring on the service. Raises RemoteError (or FrameError for a frame it cannot send)."""
        result = self.runtime._send(Request(self, frame_bgr, prompt, 0, timestamp, boxes), answers=list(answers))
        if isinstance(result, Exception):
            raise result
        return result.choice

    def close(self) -> None:
        """Close the stream on the service (its slot freed); a failure to reach it is logged, not raised (the
        service closes idle streams itself)."""
        if self.closed:
            return
        self.closed = True
        self.runtime.streams.pop(self.name, None)
        try:
            self.runtime._closer.close(self.remote_id)
        except (ServeError, *NETWORK_ERRORS) as e:
            log.warning("stream %r: could not close %r on %s (%s); the service closes it when idle",
                        self.name, self.remote_id, self.runtime.url, e)


class RemoteRuntime:
    """A stand-in for edge.runtime.Runtime whose streams are answered by the serve application at ``url``."""

    def __init__(self, url: str, info: dict, namespace: str | None = None, timeout_s: float = 120.0,
                 frame_format: str = "png", close_timeout_s: float = 1.0):
        if frame_format not in ("png", "jpeg", "raw"):
            raise ValueError(f"frame_format must be png, jpeg or raw, got {frame_format!r}")
        self.client = ServeClient(url, timeout_s=timeout_s, frame_format=frame_format)
        self._closer = ServeClient(url, timeout_s=close_timeout_s)  # closing must not hold up a node's stop
        self.url = self.client.url
        self.namespace = default_namespace() if namespace is None else namespace
        self.manifest = manifest_from_info(self.url, info)
        self.streams: dict[str, RemoteStream] = {}
        self.close_timeout_s = close_timeout_s
        self._closed = False

    @classmethod
    def connect(cls, url: str, namespace: str | None = None, timeout_s: float = 120.0, frame_format: str = "png",
                connect_timeout_s: float = 10.0) -> "RemoteRuntime":
        """Check that ``url`` answers as the serve application (/v1/health, then /v1/info for the model's action
        heads), within ``connect_timeout_s``; ServeUnavailable naming the URL and what failed otherwise.
        ``namespace``: the prefix of this runtime's stream ids on the service (default ``<hostname>-<pid>``);
        ``timeout_s``: how long one request may take."""
        probe = ServeClient(url, timeout_s=connect_timeout_s)  # ValueError for a URL that is not http://host:port
        for path, call in (("/v1/health", probe.health), ("/v1/info", probe.info)):
            try:
                out = call()
            except ServeError as e:
                raise ServeUnavailable(f"serve application {probe.url}: GET {path} failed: {e}") from None
            except NETWORK_ERRORS as e:
                raise ServeUnavailable(f"serve application {probe.url} does not answer (GET {path}: "
                                       f"{type(e).__name__}: {e}); is `cobra-edge serve` running there?") from None
            if not isinstance(out, dict):
                raise ServeUnavailable(f"{probe.url}{path} did not answer with a JSON object: is this cobra-edge "
                                       "serve?")
        return cls(url, out, namespace, timeout_s, frame_format)

    # what Runtime's users call

    def open_stream(self, name: str, mode: str = "reset", on_nonfinite: str | None = None) -> RemoteStream:
        """Open ``name`` on the service (id: ``remote_stream_id(namespace, name)``). StreamError when it is open
        already, here or there (another node with the same namespace?), or the service refuses it."""
        self._check_open()
        check_new_stream(name, mode, self.streams)
        stream = RemoteStream(self, name, remote_stream_id(self.namespace, name), mode)
        if on_nonfinite is not None:
            stream.on_nonfinite = on_nonfinite
        try:
            self.client.open(stream.remote_id, mode)
        except ServeError as e:
            hint = (" (another node with the same namespace is using it, or one stopped without closing it: the "
                    "service frees it after its idle timeout; or choose another namespace)") if e.status == 409 else ""
            raise StreamError(f"stream {name!r}: {self.url} refused to open {stream.remote_id!r}: {e}{hint}") from None
        except NETWORK_ERRORS as e:
            raise StreamError(f"stream {name!r}: could not open {stream.remote_id!r} on {self.url}: "
                              f"{type(e).__name__}: {e}") from None
        self.streams[name] = stream
        return stream

    def answer(self, requests: list[Request]) -> list[Answer | Exception]:
        """Send every request's frame at once: one HTTP request for the whole batch (``POST /v1/frames``: one hop
        through the cluster's proxy and ingress for all of them, measured in bench/serve.py), one per frame where
        the batch holds answer sets (each scored on its own) or a frame the service no longer knew. Per request its
        Answer or the exception that failed it (RemoteError, StreamError, FrameError), in order; never raises for a
        request's sake."""
        if not requests:
            return []
        if len(requests) == 1:
            return [self._send(requests[0])]
        return self._send_many(requests)

    def close(self) -> None:
        """Close every stream on the service, all at once and within ``close_timeout_s`` (what is still open then
        expires there after its idle timeout). Idempotent."""
        if self._closed:
            return
        self._closed = True
        closers = [threading.Thread(target=s.close, name=f"cobra-edge-close-{i}", daemon=True)
                   for i, s in enumerate(self.streams.values())]
        for t in closers:
            t.start()
        deadline = time.monotonic() + self.close_timeout_s + 0.5
        for t in closers:
            t.join(max(0.0, deadline - time.monotonic()))

    # internals

    def _check_open(self) -> None:
        if self._closed:
            raise StreamError(f"the remote runtime for {self.url} is closed")

    def _send(self, req: Request, answers: list[str] | None = None):
        """One request on the service -> its Answer or the exception that failed it (counted on its stream)."""
        s = req.stream
        problem = self._problem(req)
        if problem is not None:
            return self._failed(req, problem)
        s.stats.frames += 1
        index = s.stats.frames - 1
        options = {"answers": answers} if answers is not None else (
            {"act": True} if req.act else {"max_new_tokens": req.max_new_tokens})
        try:
            for attempt in (0, 1):
                try:
                    out = self.client.frame(s.remote_id, req.frame, req.prompt, capture_time=req.timestamp, **options)
                    break
                except ServeError as e:
                    if e.status != 404 or attempt or s.closed:
                        raise
                    self._reopen(s, e)
        except ServeError as e:
            return self._failed(req, RemoteError(_named(s.name, f"{self.url} answered HTTP {e.status}: "
                                                                f"{_strip_status(e)}"), s.name, e.status))
        except NETWORK_ERRORS as e:
            return self._failed(req, RemoteError(f"stream {s.name!r}: no answer from {self.url} "
                                                 f"({type(e).__name__}: {e})", s.name))
        except CobraEdgeError as e:  # encode_frame: not a uint8 BGR frame
            return self._failed(req, type(e)(_named(s.name, str(e))) if isinstance(e, FrameError) else e)
        except Exception as e:  # not planned for: still this request's error, never the caller's exception
            log.error("stream %r: unexpected %s sending a frame to %s", s.name, type(e).__name__, self.url,
                      exc_info=e)
            return self._failed(req, RemoteError(f"stream {s.name!r}: unexpected {type(e).__name__} sending the "
                                                 f"frame to {self.url}: {e}", s.name))
        return self._reply(req, index, out)

    def _problem(self, req: Request) -> StreamError | None:
        """Why ``req`` cannot be sent to the service, or None."""
        s = req.stream
        if not isinstance(s, RemoteStream) or s.runtime is not self:
            return StreamError(f"stream {getattr(s, 'name', s)!r} is not a stream of {self.url}")
        if s.closed:
            return StreamError(f"stream {s.name!r} is closed")
        if req.text_only or req.frame is None:
            return StreamError(f"stream {s.name!r}: the serve application answers frames; a text-only prompt has "
                               "no frame to send")
        if req.boxes is not None:
            return StreamError(f"stream {s.name!r}: detector boxes are not part of the serve API")
        if req.start is not None or not req.write_state:
            return StreamError(f"stream {s.name!r}: forks (a start state) are not part of the serve API")
        return None

    def _reply(self, req: Request, index: int, out: dict):
        """A 200 reply -> the Answer, or the error of a dropped frame or an unreadable reply."""
        s = req.stream
        if out.get("status") == "dropped":
            reason = out.get("reason")
            return self._failed(req, RemoteError(f"stream {s.name!r}: {self.url} dropped the frame ({reason}) on "
                                                 f"{out.get('replica')}", s.name, reason=reason))
        try:
            answer = self._answer_of(s, req, index, out)
        except (KeyError, TypeError, ValueError) as e:
            return self._failed(req, RemoteError(f"stream {s.name!r}: {self.url} sent a reply this client cannot "
                                                 f"read ({type(e).__name__}: {e}): {str(out)[:300]}", s.name))
        s.stats.answered += 1
        return answer

    def _send_many(self, requests: list[Request]) -> list[Answer | Exception]:
        results: list = [None] * len(requests)
        items, sent = [], []
        for i, req in enumerate(requests):
            problem = self._problem(req)
            if problem is not None:
                results[i] = self._failed(req, problem)
                continue
            s = req.stream
            try:
                items.append(frame_body(req.frame, req.prompt, self.client.frame_format, req.timestamp,
                                        stream=s.remote_id, **({"act": True} if req.act else
                                                               {"max_new_tokens": req.max_new_tokens})))
            except CobraEdgeError as e:  # not a uint8 BGR frame
                results[i] = self._failed(req, FrameError(_named(s.name, str(e))))
                continue
            s.stats.frames += 1
            sent.append(i)
        if not items:
            return results
        try:
            status, out = self.client.request("POST", "/v1/frames", {"frames": items})
            replies = out.get("results") if status == 200 else None
            if not isinstance(replies, list) or len(replies) != len(items):
                raise RemoteError(f"{self.url} answered POST /v1/frames with HTTP {status}: "
                                  f"{str(out.get('error', out))[:300]}", None, status)
        except (RemoteError, *NETWORK_ERRORS) as e:
            for i in sent:
                s = requests[i].stream
                results[i] = self._failed(requests[i], RemoteError(
                    f"stream {s.name!r}: no answer from {self.url} ({type(e).__name__}: {e})", s.name,
                    getattr(e, "status", None)))
            return results
        for i, reply in zip(sent, replies):
            req, s = requests[i], requests[i].stream
            code = int(reply.pop("http", 200)) if isinstance(reply, dict) else 500
            if code == 404 and not s.closed:  # expired or forgotten: reopened and sent alone, as _send does
                s.stats.frames -= 1
                results[i] = self._send(req)
            elif code >= 400:
                results[i] = self._failed(req, RemoteError(_named(s.name, f"{self.url} answered HTTP {code}: "
                                                                          f"{reply.get('error')}"), s.name, code))
            else:
                results[i] = self._reply(req, s.stats.frames - 1, reply)
        return results

    def _reopen(self, s: RemoteStream, error: ServeError) -> None:
        """The service forgot the stream (it expired, or the service restarted): open it again (state fresh)."""
        (log.warning if s.mode == "continuous" else log.info)(
            "stream %r: %s no longer knows %r (%s): opening it again%s", s.name, self.url, s.remote_id,
            _strip_status(error), "; its state starts fresh" if s.mode == "continuous" else "")
        try:
            self.client.open(s.remote_id, s.mode)
        except ServeError as e:
            if e.status != 409:  # 409: opened meanwhile; send again
                raise

    def _answer_of(self, s: RemoteStream, req: Request, index: int, out: dict) -> Answer:
        stages = out.get("stages_ms") or {}
        tokens = [int(t) for t in out.get("tokens", [])]
        profile = FrameProfile(stream=s.name, frame_index=index, age_ms=_number(out.get("age_ms")),
                               capture_ts=req.timestamp, new_tokens=len(tokens),
                               batch_size=int(out.get("batch_size", 1)), dropped=req.dropped,
                               **{k: float(stages.get(k, 0.0)) for k in STAGE_FIELDS})
        outputs = out.get("outputs")
        if outputs is not None:
            outputs = {str(k): float(v) for k, v in outputs.items()}
        choice = None
        if out.get("choice") is not None:
            c = out["choice"]
            choice = Choice(s.name, str(c["answer"]), float(c["probability"]),
                            {str(k): float(v) for k, v in c["log_probs"].items()}, profile)
        return Answer(s.name, str(out["text"]), tokens, profile, choice=choice, outputs=outputs)

    def _failed(self, req: Request, error: Exception) -> Exception:
        stats = getattr(req.stream, "stats", None)
        if stats is not None:
            stats.errors += 1
            stats.last_error = str(error)
        return error


def manifest_from_info(url: str, info: dict) -> RemoteManifest:
    """/v1/info -> the manifest's heads (from the first replica that reports them)."""
    replicas = info.get("replicas") if isinstance(info, dict) else None
    if not isinstance(replicas, list):
        raise ServeUnavailable(f"{url}/v1/info has no 'replicas' list: is this cobra-edge serve?")
    described = [r for r in replicas if isinstance(r, dict) and isinstance(r.get("heads"), list)]
    if not described:
        raise ServeUnavailable(f"{url}/v1/info: no live replica describes its model ({len(replicas)} replica(s) "
                               "listed); try again when the service has started")
    r = described[0]
    heads = [RemoteHead(str(h["name"]), tuple(HeadValue(str(v["name"]), str(v.get("unit", "")), float(v["lo"]),
                                                        float(v["hi"])) for v in h["values"]))
             for h in r["heads"]]
    model = {"name": r["model"]} if r.get("model") else {}
    return RemoteManifest(url, heads, model, info)


def default_namespace() -> str:
    """``<hostname>-<pid>`` (and ``-<n>`` for a second runtime of one process): unique per node."""
    n = next(_instances)
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname()) or "host"
    return f"{host}-{os.getpid()}" + (f"-{n}" if n else "")


def _named(stream: str, message: str) -> str:
    return message if repr(stream) in message else f"stream {stream!r}: {message}"


def _strip_status(error: ServeError) -> str:
    text = str(error)
    prefix = f"HTTP {error.status}: "
    return text[len(prefix):] if text.startswith(prefix) else text


def _number(value) -> float | None:
    return None if value is None else float(value)
