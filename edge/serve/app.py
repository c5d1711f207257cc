"""The Ray Serve application: an HTTP ingress (FastAPI) over the router (edge/serve/router.py).

    start_local()                                  # Ray on loopback (cluster.py)
    url = run(artifact, ServeOptions(replicas=2), port=8000)
    ...                                            # ServeClient(url) (client.py), or curl: docs/serve.md
    shutdown()

One ingress replica holds the routing table and the snapshots' references; it does no model work (its Ray CPU
share is 0). Serve restarts it if it fails; its replicas and snapshots go with it (streams then start fresh), which
is the one failure this design does not survive, stated in docs/serve.md.
"""

# no "from __future__ import annotations": FastAPI reads the handlers' annotations (Request) at definition

import json
import logging
import socket
from contextlib import contextmanager

from .cluster import LOOPBACK, need_ray
from .protocol import API, ApiError, FrameRequest, OpenRequest, check_stream_name, parse_frames
from .options import ServeOptions
from .router import Router

log = logging.getLogger("cobra_edge.serve")
APP_NAME = "cobra-edge"
MAX_BODY_BYTES = 256 * 2 ** 20  # a request's body (POST /v1/frames of 256 frames of ~1 MB each)


def build_app(artifact: str, options: ServeOptions):
    """The Serve application (a bound deployment) for ``artifact``."""
    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse
    from ray import serve

    api = FastAPI(title="cobra-edge serve", version=API)

    async def handle(call, request: Request | None = None, ok: int = 200, stream: str | None = None):
        """Run ``call(body)``; ApiError and malformed JSON become their 4xx, anything else a 500 naming it."""
        try:
            body = None
            if request is not None:
                declared = request.headers.get("content-length")
                _check_body_size(int(declared) if declared and declared.isdigit() else 0, stream)  # before reading
                raw = await request.body()
                _check_body_size(len(raw), stream)
                try:
                    body = json.loads(raw) if raw else None
                except (UnicodeDecodeError, json.JSONDecodeError) as e:
                    raise ApiError(400, f"request body is not JSON: {e}", stream) from None
            out = await call(body)
            status, out = out if isinstance(out, tuple) else (ok, out)
            return JSONResponse(_plain(out), status_code=status)
        except ApiError as e:
            return JSONResponse(e.to_dict(), status_code=e.status)
        except Exception as e:
            log.exception("serve: unexpected %s", type(e).__name__)
            return JSONResponse({"error": f"internal error: {type(e).__name__}: {e}", "stream": stream},
                                status_code=500)

    @serve.deployment(name=APP_NAME, num_replicas=1, ray_actor_options={"num_cpus": 0},
                      max_ongoing_requests=4096)
    @serve.ingress(api)
    class Ingress:
        async def __init__(self, artifact: str, options: ServeOptions):
            logging.basicConfig(level=logging.INFO)
            self.router = Router(artifact, options)
            await self.router.start()

        @api.get("/v1/health")
        async def health(self):
            return await handle(lambda _: _ok({"ok": True, "replicas": len(self.router.replicas)}))

        @api.get("/v1/info")
        async def info(self):
            return await handle(lambda _: self.router.info())

        @api.get("/v1/streams")
        async def streams(self):
            return await handle(lambda _: _ok({"streams": self.router.table()}))

        @api.post("/v1/streams")
        async def open_stream(self, request: Request):
            async def call(body):
                return 201, await self.router.open(OpenRequest.parse(body))
            return await handle(call, request)

        @api.post("/v1/streams/{stream}/frames")
        async def frame(self, stream: str, request: Request):
            try:
                self.router.require(check_stream_name(stream))  # an unknown stream is a 404 whatever its body
            except ApiError as e:
                return JSONResponse(e.to_dict(), status_code=e.status)
            return await handle(lambda body: self.router.frame(FrameRequest.parse(stream, body)), request,
                                stream=stream)

        @api.post("/v1/frames")
        async def frames(self, request: Request):
            async def call(body):
                results = await self.router.frames(parse_frames(body))
                return {"results": [{**out, "http": status} for status, out in results]}
            return await handle(call, request)

        @api.get("/v1/streams/{stream}/state")
        async def state(self, stream: str):
            return await handle(lambda _: self.router.state(check_stream_name(stream)), stream=stream)

        @api.delete("/v1/streams/{stream}")
        async def close_stream(self, stream: str):
            return await handle(lambda _: self.router.close(check_stream_name(stream)), stream=stream)

    return Ingress.bind(str(artifact), options)


def run(artifact: str, options: ServeOptions, port: int = 8000, host: str = LOOPBACK) -> str:
    """Start Serve's HTTP proxy on ``host``:``port`` and deploy the application; -> its URL. Ray must be up
    (cluster.start_local). Returns when every replica has loaded its runtime."""
    need_ray()
    from ray import serve

    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(artifact, options), name=APP_NAME, route_prefix="/")
    return f"http://{host}:{port}"


@contextmanager
def local_service(artifact: str, options: ServeOptions, port: int | None = None, num_cpus: float | None = None):
    """Ray on loopback, the application deployed, its URL yielded; everything stopped on exit (tests, scripts).
    ``port`` None: a free loopback port. ``num_cpus``: Ray's logical CPUs (default: enough for the replicas)."""
    from .cluster import start_local

    if port is None:
        port = free_port()
    if num_cpus is None:
        num_cpus = options.cluster_cpus
    start_local(num_cpus=num_cpus)
    try:
        yield run(artifact, options, port)
    finally:
        shutdown()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def shutdown() -> None:
    """Delete the application (its replicas with it) and stop Serve, then Ray (when this process started it)."""
    import ray
    from ray import serve

    try:
        serve.shutdown()
    finally:
        if ray.is_initialized():
            ray.shutdown()


def _check_body_size(n_bytes: int, stream: str | None) -> None:
    if n_bytes > MAX_BODY_BYTES:
        raise ApiError(413, f"request body of {n_bytes:,} bytes is over the limit of {MAX_BODY_BYTES:,}", stream)


async def _ok(value):
    return value


def _plain(value):
    """numpy arrays and scalars in a body -> JSON-able values (state diagnostics send arrays as lists)."""
    import numpy as np

    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return {"dtype": str(value.dtype), "shape": list(value.shape), "data": value.ravel().tolist()}
    if isinstance(value, np.generic):
        return value.item()
    return value
