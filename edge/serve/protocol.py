"""The serve application's JSON API: what a request may hold, how a frame travels, what an answer says.

Ray-free and HTTP-framework-free, so the client, the ingress and the tests share one definition (docs/serve.md).

    POST   /v1/streams                      {"stream": "cam0", "mode": "reset"|"continuous"}  -> 201
    POST   /v1/streams/{stream}/frames      a FrameRequest's JSON                            -> 200 answer
    POST   /v1/frames                       {"frames": [{"stream": id, ...}, ...]}           -> 200 {"results"}
    DELETE /v1/streams/{stream}                                                              -> 200
    GET    /v1/streams | /v1/info | /v1/health

A frame is ``{"image": base64 of JPEG/PNG bytes}`` or ``{"raw": base64 of uint8 BGR, "shape": [H, W, 3]}``.
Every error is ``{"error": message, "stream": name or null}`` with a 4xx status for the caller's mistakes (400
malformed, 404 unknown or expired stream, 409 stream already open, 413 too many pixels, 422 a frame or prompt the
model cannot take) and 503 when no replica could answer.
"""

from __future__ import annotations

import base64
import binascii
import math
import time
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import CobraEdgeError, FrameError, PromptError, StreamError
from ..imageheader import DEFAULT_MAX_PIXELS, ImageHeaderError, check_encoded

API = "v1"
MODES = ("reset", "continuous")
MAX_NEW_TOKENS = 256
MAX_ANSWERS = 64
MAX_FRAMES = 256  # frames in one POST /v1/frames


class ApiError(Exception):
    """A request the service refuses: an HTTP status, and a message naming the stream and what is wrong."""

    def __init__(self, status: int, message: str, stream: str | None = None):
        super().__init__(message)
        self.status = status
        self.stream = stream

    def to_dict(self) -> dict:
        return {"error": str(self), "stream": self.stream}


def status_for(error: BaseException) -> int:
    """The HTTP status of a runtime error that failed one stream's frame (edge.errors)."""
    if isinstance(error, ImageHeaderError) and "over the limit" in str(error):
        return 413
    if isinstance(error, (FrameError, PromptError)):
        return 422
    if isinstance(error, ApiError):
        return error.status
    if isinstance(error, StreamError):
        return 409
    return 500


def check_stream_name(name, where: str = "stream") -> str:
    if not isinstance(name, str) or not name or len(name) > 256 or any(c in name for c in "/\\\0"):
        raise ApiError(400, f"{where}: a stream id is a non-empty string of at most 256 characters without '/', "
                            f"'\\' or NUL; got {name!r}")
    return name


@dataclass(frozen=True)
class OpenRequest:
    stream: str
    mode: str = "reset"

    @classmethod
    def parse(cls, body) -> "OpenRequest":
        if not isinstance(body, dict):
            raise ApiError(400, f"open a stream with a JSON object {{'stream': id, 'mode': ...}}, got "
                                f"{type(body).__name__}")
        unknown = set(body) - {"stream", "mode"}
        if unknown:
            raise ApiError(400, f"open stream: unknown field(s) {sorted(unknown)}; allowed: stream, mode",
                           body.get("stream") if isinstance(body.get("stream"), str) else None)
        name = check_stream_name(body.get("stream"), "open stream")
        mode = body.get("mode", "reset")
        if mode not in MODES:
            raise ApiError(400, f"stream {name!r}: unknown mode {mode!r}; use one of {MODES}", name)
        return cls(name, mode)


@dataclass
class FrameRequest:
    """One frame for one stream, checked; ``frame`` is decoded on the replica (``decode``), not in the router."""

    stream: str
    prompt: str
    image: bytes | None = None  # JPEG/PNG bytes
    raw: bytes | None = None  # uint8 BGR, ``shape``
    shape: tuple[int, int, int] | None = None
    capture_time: float | None = None  # time.time() seconds at the camera
    answers: list[str] | None = None  # answer-set scoring instead of decoding
    act: bool = False  # the control path: action heads only, no text
    max_new_tokens: int = 16
    max_age_ms: float | None = None  # dropped ("stale") if older than this when its turn comes

    FIELDS = ("image", "raw", "shape", "prompt", "capture_time", "answers", "act", "max_new_tokens", "max_age_ms")

    @classmethod
    def parse(cls, stream: str, body) -> "FrameRequest":
        s = check_stream_name(stream)
        if not isinstance(body, dict):
            raise ApiError(400, f"stream {s!r}: a frame request is a JSON object, got {type(body).__name__}", s)
        unknown = set(body) - set(cls.FIELDS)
        if unknown:
            raise ApiError(400, f"stream {s!r}: unknown field(s) {sorted(unknown)}; allowed: {list(cls.FIELDS)}", s)
        prompt = body.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ApiError(400, f"stream {s!r}: 'prompt' must be a non-empty string, got {prompt!r}", s)
        req = cls(s, prompt)
        if ("image" in body) == ("raw" in body):
            raise ApiError(400, f"stream {s!r}: give exactly one of 'image' (base64 JPEG/PNG) and 'raw' (base64 uint8 "
                                "BGR with 'shape')", s)
        if "image" in body:
            req.image = _b64(body["image"], s, "image")
        else:
            req.raw = _b64(body["raw"], s, "raw")
            req.shape = _shape(body.get("shape"), len(req.raw), s)
        t = body.get("capture_time")
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t)):
            raise ApiError(400, f"stream {s!r}: 'capture_time' must be time.time() seconds, got {t!r}", s)
        req.capture_time = None if t is None else float(t)
        answers = body.get("answers")
        if answers is not None:
            if (not isinstance(answers, list) or not 1 <= len(answers) <= MAX_ANSWERS
                    or not all(isinstance(a, str) and a.strip() for a in answers)):
                raise ApiError(400, f"stream {s!r}: 'answers' must be 1..{MAX_ANSWERS} non-empty strings, got "
                                    f"{answers!r}", s)
            req.answers = answers
        act = body.get("act", False)
        if not isinstance(act, bool):
            raise ApiError(400, f"stream {s!r}: 'act' must be true or false, got {act!r}", s)
        if act and answers is not None:
            raise ApiError(400, f"stream {s!r}: 'act' (the heads' values) and 'answers' (answer-set scoring) exclude "
                                "each other", s)
        req.act = act
        n = body.get("max_new_tokens", 16)
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_NEW_TOKENS:
            raise ApiError(400, f"stream {s!r}: 'max_new_tokens' must be an integer 0..{MAX_NEW_TOKENS}, got {n!r}", s)
        req.max_new_tokens = n
        age = body.get("max_age_ms")
        if age is not None and (isinstance(age, bool) or not isinstance(age, (int, float)) or not age > 0):
            raise ApiError(400, f"stream {s!r}: 'max_age_ms' must be a number > 0, got {age!r}", s)
        req.max_age_ms = None if age is None else float(age)
        return req

    def decode(self, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """-> uint8 BGR [H, W, 3]. FrameError (ImageHeaderError above ``max_pixels``) naming the stream."""
        what = f"stream {self.stream!r}: frame"
        if self.raw is not None:
            h, w, _ = self.shape
            if h * w > max_pixels:
                raise ImageHeaderError(f"{what}: raw {w} x {h} = {w * h:,} pixels, over the limit of {max_pixels:,}")
            return np.frombuffer(self.raw, np.uint8).reshape(self.shape)
        check_encoded(self.image, max_pixels, what)
        frame = cv2.imdecode(np.frombuffer(self.image, np.uint8), cv2.IMREAD_COLOR)
        if frame is None:
            raise FrameError(f"{what}: {len(self.image)} bytes could not be decoded as JPEG or PNG (corrupt?)")
        return frame

    def to_json(self) -> dict:
        body = {"prompt": self.prompt, "act": self.act, "max_new_tokens": self.max_new_tokens}
        if self.image is not None:
            body["image"] = base64.b64encode(self.image).decode("ascii")
        else:
            body.update(raw=base64.b64encode(self.raw).decode("ascii"), shape=list(self.shape))
        for k in ("capture_time", "answers", "max_age_ms"):
            if getattr(self, k) is not None:
                body[k] = getattr(self, k)
        return body


def parse_frames(body) -> list:
    """``POST /v1/frames``: {"frames": [{"stream": id, <frame request fields>}, ...]} -> per item a FrameRequest or
    the ApiError that refused that item alone (a malformed envelope is one ApiError for the whole request)."""
    items = body.get("frames") if isinstance(body, dict) and set(body) == {"frames"} else None
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_FRAMES:
        raise ApiError(400, f"POST /v1/frames takes {{'frames': [...]}} with 1..{MAX_FRAMES} frame requests, each "
                            "with its 'stream'")
    out = []
    for k, item in enumerate(items):
        try:
            if not isinstance(item, dict) or "stream" not in item:
                raise ApiError(400, f"frames[{k}]: a frame request with its 'stream' is a JSON object")
            fields = dict(item)
            out.append(FrameRequest.parse(check_stream_name(fields.pop("stream"), f"frames[{k}]"), fields))
        except ApiError as e:
            out.append(e)
    return out


def encode_frame(frame: np.ndarray, fmt: str = "png") -> dict:
    """A uint8 BGR frame as the request's frame fields: PNG (lossless, the default), JPEG, or raw."""
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise FrameError(f"a frame is uint8 BGR [H, W, 3], got {getattr(frame, 'dtype', type(frame).__name__)} "
                         f"{getattr(frame, 'shape', '')}")
    if fmt == "raw":
        return {"raw": base64.b64encode(np.ascontiguousarray(frame).tobytes()).decode("ascii"),
                "shape": list(frame.shape)}
    ok, data = cv2.imencode("." + {"png": "png", "jpeg": "jpg", "jpg": "jpg"}[fmt], frame)
    if not ok:
        raise FrameError(f"could not encode the frame as {fmt}")
    return {"image": base64.b64encode(data.tobytes()).decode("ascii")}


def frame_body(frame: np.ndarray, prompt: str, fmt: str = "png", capture_time: float | None = None,
               **options) -> dict:
    """A frame request's JSON body (``stream`` among ``options`` for ``POST /v1/frames``): the frame encoded as
    ``fmt``, the prompt, the capture time (now when None) and the request's options."""
    body = {**encode_frame(frame, fmt), "prompt": prompt, **options}
    body["capture_time"] = time.time() if capture_time is None else capture_time
    return body


def answer_json(answer, stream: str, replica: str, frame: int) -> dict:
    """An edge Answer as the response body (``status`` "answered")."""
    p = answer.profile
    out = {"status": "answered", "stream": stream, "replica": replica, "frame": frame, "text": answer.text,
           "tokens": [int(t) for t in answer.token_ids],
           "stages_ms": {k: round(float(getattr(p, k)), 3) for k in
                         ("preprocess", "vision", "projector", "prefill", "heads", "decode", "total")},
           "batch_size": int(p.batch_size), "age_ms": None if p.age_ms is None else round(float(p.age_ms), 3)}
    if answer.outputs is not None:
        out["outputs"] = {k: float(v) for k, v in answer.outputs.items()}
    if answer.choice is not None:
        c = answer.choice
        out["choice"] = {"answer": c.answer, "probability": float(c.probability),
                         "log_probs": {k: float(v) for k, v in c.log_probs.items()}}
    return out


def dropped_json(stream: str, replica: str, reason: str) -> dict:
    """A frame not answered because a newer one of its stream came ("superseded") or it aged ("stale")."""
    return {"status": "dropped", "stream": stream, "replica": replica, "reason": reason}


def error_body(error: BaseException, stream: str | None) -> tuple[int, dict]:
    """(status, body) of an error that failed one request."""
    if isinstance(error, ApiError):
        return error.status, error.to_dict()
    status = status_for(error)
    message = str(error) if isinstance(error, CobraEdgeError) else f"{type(error).__name__}: {error}"
    return status, {"error": message, "stream": stream}


def _b64(value, stream: str, field: str) -> bytes:
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"stream {stream!r}: {field!r} must be a non-empty base64 string", stream)
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ApiError(400, f"stream {stream!r}: {field!r} is not valid base64 ({e})", stream) from None


def _shape(shape, n_bytes: int, stream: str) -> tuple[int, int, int]:
    if (not isinstance(shape, list) or len(shape) != 3 or shape[2] != 3
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
        raise ApiError(400, f"stream {stream!r}: 'raw' needs 'shape' [H, W, 3] of positive integers, got {shape!r}",
                       stream)
    if shape[0] * shape[1] * 3 != n_bytes:
        raise ApiError(400, f"stream {stream!r}: 'raw' holds {n_bytes} bytes, shape {shape} needs "
                            f"{shape[0] * shape[1] * 3}", stream)
    return tuple(shape)
