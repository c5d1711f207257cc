"""A Python client of the serve application's JSON API (stdlib only: no Ray, no requests).

    client = ServeClient("http://127.0.0.1:8000")
    client.open("cam0", mode="continuous")
    out = client.ask("cam0", frame_bgr, "Is the path clear?")      # {"status": "answered", "text": ..., ...}
    out = client.act("cam0", frame_bgr, "Go to the red circle.")   # out["outputs"]: the heads' values
    out = client.choose("cam0", frame_bgr, "Is the path clear?", ["yes", "no"])
    client.close("cam0")

Every call returns the response body; a 4xx/5xx raises ServeError with the status and the service's message.
Each thread keeps its own keep-alive connection, so one client serves many camera threads.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from urllib.parse import quote, urlsplit

import numpy as np

from ..errors import CobraEdgeError
from .protocol import frame_body


class ServeError(CobraEdgeError):
    def __init__(self, status: int, message: str, stream: str | None = None):
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.stream = stream


class ServeClient:
    def __init__(self, url: str, timeout_s: float = 120.0, frame_format: str = "png"):
        parts = urlsplit(url)
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"serve URL must look like http://127.0.0.1:8000, got {url!r}")
        self.url = url.rstrip("/")
        self.host, self.port = parts.hostname, parts.port or 80
        self.timeout_s = timeout_s
        self.frame_format = frame_format
        self._local = threading.local()

    # the API

    def health(self) -> dict:
        return self._call("GET", "/v1/health")

    def info(self) -> dict:
        return self._call("GET", "/v1/info")

    def streams(self) -> list[dict]:
        return self._call("GET", "/v1/streams")["streams"]

    def open(self, stream: str, mode: str = "reset") -> dict:
        return self._call("POST", "/v1/streams", {"stream": stream, "mode": mode})

    def close(self, stream: str) -> dict:
        return self._call("DELETE", f"/v1/streams/{quote(stream, safe='')}")

    def state(self, stream: str) -> dict:
        """{"replica", "state": {"frame", "conv", "ssm"}, "snapshot": same or None}, arrays as numpy."""
        out = self._call("GET", f"/v1/streams/{quote(stream, safe='')}/state")
        for part in ("state", "snapshot"):
            if out.get(part):
                out[part] = {k: _array(v) for k, v in out[part].items()}
        return out

    def frame(self, stream: str, frame: np.ndarray, prompt: str, capture_time: float | None = None,
              **options) -> dict:
        """Send one frame (uint8 BGR [H, W, 3]) with ``prompt`` and request options (answers, act,
        max_new_tokens, max_age_ms: docs/serve.md). -> the answer (or ``dropped``) body."""
        body = frame_body(frame, prompt, self.frame_format, capture_time, **options)
        return self._call("POST", f"/v1/streams/{quote(stream, safe='')}/frames", body)

    def frames(self, items: list[dict], capture_time: float | None = None) -> list[dict]:
        """Several streams' frames in one request (a robot's cameras): ``items`` are {"stream", "frame", "prompt",
        options...}. -> per item its body with ``http`` (200, or that item's error status): one bad item fails
        alone."""
        now = time.time() if capture_time is None else capture_time
        body = [frame_body(it["frame"], it["prompt"], self.frame_format, now,
                           **{k: v for k, v in it.items() if k not in ("frame", "prompt")}) for it in items]
        return self._call("POST", "/v1/frames", {"frames": body})["results"]

    def ask(self, stream: str, frame: np.ndarray, prompt: str, max_new_tokens: int = 16, **kw) -> dict:
        return self.frame(stream, frame, prompt, max_new_tokens=max_new_tokens, **kw)

    def act(self, stream: str, frame: np.ndarray, prompt: str, **kw) -> dict:
        return self.frame(stream, frame, prompt, act=True, **kw)

    def choose(self, stream: str, frame: np.ndarray, prompt: str, answers: list[str], **kw) -> dict:
        return self.frame(stream, frame, prompt, answers=list(answers), **kw)

    def request(self, method: str, path: str, body=None, raw: bytes | None = None) -> tuple[int, dict]:
        """A raw call: (status, parsed body), no raising (tests of malformed requests)."""
        return self._send(method, path, raw if raw is not None else
                          (None if body is None else json.dumps(body).encode()))

    # internals

    def _call(self, method: str, path: str, body=None) -> dict:
        status, out = self._send(method, path, None if body is None else json.dumps(body).encode())
        if status >= 400:
            raise ServeError(status, out.get("error", str(out)), out.get("stream"))
        return out

    def _send(self, method: str, path: str, data: bytes | None) -> tuple[int, dict]:
        for attempt in (0, 1):  # a kept-alive connection the server closed meanwhile: reconnect once
            conn = self._conn()
            try:
                conn.request(method, path, body=data,
                             headers={"Content-Type": "application/json"} if data is not None else {})
                resp = conn.getresponse()
                payload = resp.read()
                break
            except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest,
                    http.client.BadStatusLine):
                self._local.conn = None
                conn.close()
                if attempt:
                    raise
        try:
            out = json.loads(payload) if payload else {}
        except json.JSONDecodeError:
            out = {"error": payload[:500].decode("utf-8", "replace")}
        return resp.status, out

    def _conn(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)
        return conn


def _array(v):
    if isinstance(v, dict) and {"dtype", "shape", "data"} <= set(v):
        return np.asarray(v["data"], dtype=v["dtype"]).reshape(v["shape"])
    return v
