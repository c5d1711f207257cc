"""The router: which replica holds each stream, its last snapshot, and what happens when a replica dies.

Runs inside the serve application's ingress (edge/serve/app.py), one instance, on one asyncio loop: every change
to the tables happens between awaits, so no locks but the failover's.

    router = Router(artifact, ServeOptions(replicas=2))
    await router.start()                       # replica actors loaded and answering
    await router.open(OpenRequest("cam0", "continuous"))
    status, body = await router.frame(FrameRequest.parse("cam0", json_body))

Routing: a stream is placed once, on the live replica holding the fewest streams, and every frame of it goes
there while that replica lives (its state is there). Placement is explicit, not hashed: Ray Serve's own routing
spreads requests over a deployment's replicas by load and cannot pin a key to one, so replicas are Ray actors that
this router owns and addresses by name.

Failure: a call that finds its replica dead (Ray's ActorDiedError / ActorUnavailableError; the health loop finds
idle ones, and ones whose batching worker failed, within ``health_period_s``) moves every stream of that replica to the live replicas, each restored from
its last snapshot (in Ray's object store, put there by this router, so it outlives the replica and its node), and
the request is sent again; the first answer after the move says ``moved`` with ``frames_lost`` (continuous: frames
answered since that snapshot; reset: 0). A replacement replica is started to restore the count. With no live
replica a request waits up to ``failover_wait_s`` for the replacement, then fails with 503: never lost silently.

Idle streams (no frame for ``idle_timeout_s``) are closed on their replica (the slot freed) and forgotten; a frame
for one later is a 404 that says it expired.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from .options import ServeOptions
from .protocol import ApiError, FrameRequest, OpenRequest, status_for

log = logging.getLogger("cobra_edge.serve")


@dataclass
class _Replica:
    name: str
    actor: object
    ready: object  # the ObjectRef of its first info() call: the runtime is loaded
    streams: set[str] = field(default_factory=set)
    alive: bool = True
    pid: int | None = None


@dataclass
class _Stream:
    name: str
    mode: str
    replica: str
    frames: int = 0  # frames answered so far (lost ones included)
    snapshot: object = None  # ObjectRef of {"frame", "conv", "ssm"}, continuous streams
    snapshot_frame: int = 0
    last_seen: float = field(default_factory=time.monotonic)
    moved: dict | None = None  # reported on the next answer, then cleared
    moves: int = 0


class Router:
    def __init__(self, artifact: str, options: ServeOptions):
        self.artifact = str(artifact)
        self.options = options
        self.replicas: dict[str, _Replica] = {}
        self.streams: dict[str, _Stream] = {}
        self.expired: OrderedDict[str, float] = OrderedDict()  # name -> idle seconds when it expired (bounded)
        self.failovers: list[dict] = []  # what each failover did (when, which replica, streams, seconds)
        self._next = 0
        self.start_error: str | None = None  # why the last replica that failed to start failed
        self._failover_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task] = []

    # lifecycle

    async def start(self) -> None:
        for _ in range(self.options.replicas):
            self._spawn()
        for r in list(self.replicas.values()):
            await self._await_ready(r)
        if not self.replicas:
            raise RuntimeError(f"no replica could load {self.artifact}: {self.start_error}")
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._expire_loop()), loop.create_task(self._health_loop())]

    def _spawn(self) -> _Replica:
        from .cluster import replica_actor

        name = f"replica-{self._next}"
        self._next += 1
        o = self.options
        actor = replica_actor(o.replica, o.replica_cpus, o.replica_gpus).remote(name, self.artifact, o.replica)
        r = _Replica(name, actor, actor.info.remote())
        self.replicas[name] = r
        return r

    async def _await_ready(self, r: _Replica) -> bool:
        try:
            info = await asyncio.wait_for(_awaitable(r.ready), self.options.call_timeout_s)
        except Exception as e:
            log.error("%s did not start: %s", r.name, e)
            self.start_error = f"{type(e).__name__}: {e}"
            r.alive = False
            self.replicas.pop(r.name, None)
            return False
        r.pid = info["pid"]
        return True

    # streams

    async def open(self, req: OpenRequest) -> dict:
        if req.stream in self.streams:
            raise ApiError(409, f"stream {req.stream!r} is already open (on {self.streams[req.stream].replica})",
                           req.stream)
        for _ in range(3):
            r = await self._least_loaded()
            entry = _Stream(req.stream, req.mode, r.name)
            try:
                out = await self._call(r, "open", req.stream, req.mode)
            except _Dead:
                await self._failover(r.name)
                continue
            if req.stream in self.streams:  # opened concurrently by another request meanwhile
                await self._call(r, "close", req.stream)
                raise ApiError(409, f"stream {req.stream!r} is already open", req.stream)
            self.streams[req.stream] = entry
            r.streams.add(req.stream)
            self.expired.pop(req.stream, None)
            return out
        raise ApiError(503, f"stream {req.stream!r}: no live replica could open it", req.stream)

    async def close(self, name: str) -> dict:
        entry = self._entry(name)
        del self.streams[name]
        r = self.replicas.get(entry.replica)
        if r is not None:
            r.streams.discard(name)
            try:
                await self._call(r, "close", name)
            except _Dead:
                pass  # its state died with it; nothing to free
        return {"stream": name, "closed": True, "frames": entry.frames}

    async def frame(self, req: FrameRequest) -> tuple[int, dict]:
        """Route one frame to its stream's replica. -> (HTTP status, body)."""
        entry = self._entry(req.stream)
        entry.last_seen = time.monotonic()
        deadline = time.monotonic() + self.options.failover_wait_s
        while True:
            r = self.replicas.get(entry.replica)
            try:
                if r is None:
                    raise _Dead(entry.replica)
                result = await self._call(r, "submit", req)
                break
            except _Dead as dead:
                if self.streams.get(req.stream) is not entry:
                    raise ApiError(404, f"stream {req.stream!r} was closed", req.stream) from None
                if time.monotonic() > deadline:
                    raise ApiError(503, f"stream {req.stream!r}: no live replica within "
                                        f"{self.options.failover_wait_s:.0f} s", req.stream) from None
                await self._failover(dead.replica)
        entry.last_seen = time.monotonic()
        if result.get("status") == "error":
            return int(result.pop("http")), result
        if result.get("status") == "answered":
            snap = result.pop("snapshot", None)
            entry.frames = max(entry.frames, result["frame"])
            if snap is not None and snap["frame"] >= entry.snapshot_frame:
                import ray

                entry.snapshot = ray.put(snap)  # owned by this router: it outlives the replica that made it
                entry.snapshot_frame = snap["frame"]
            if entry.moved is not None:
                result["moved"], entry.moved = entry.moved, None
        return 200, result

    async def frames(self, items: list) -> list[tuple[int, dict]]:
        """Several frames in one request (a robot's cameras): each routed as ``frame`` does, all at once; each
        item is a FrameRequest or the ApiError that refused it. -> per item (status, body), in order."""
        async def one(item):
            if isinstance(item, ApiError):
                return item.status, item.to_dict()
            try:
                return await self.frame(item)
            except ApiError as e:
                return e.status, e.to_dict()
        return list(await asyncio.gather(*(one(i) for i in items)))

    async def state(self, name: str) -> dict:
        """The stream's state on its replica and its last snapshot (diagnostics, tests)."""
        entry = self._entry(name)
        r = self.replicas.get(entry.replica)
        if r is None:
            raise ApiError(503, f"stream {name!r}: its replica is gone", name)
        now = await self._call(r, "state", name)
        snap = None if entry.snapshot is None else await _awaitable(entry.snapshot)
        return {"replica": r.name, "state": now, "snapshot": snap}

    def table(self) -> list[dict]:
        now = time.monotonic()
        return [{"stream": e.name, "mode": e.mode, "replica": e.replica, "frames": e.frames,
                 "snapshot_frame": e.snapshot_frame if e.mode == "continuous" else None,
                 "idle_s": round(now - e.last_seen, 3), "moves": e.moves} for e in self.streams.values()]

    async def info(self) -> dict:
        replicas = []
        for r in list(self.replicas.values()):
            try:
                replicas.append(await self._call(r, "info"))
            except _Dead:
                replicas.append({"replica": r.name, "alive": False})
        o = self.options
        return {"artifact": self.artifact, "replicas": replicas, "streams": len(self.streams),
                "options": {"replicas": o.replicas, "idle_timeout_s": o.idle_timeout_s,
                            "snapshot_every": o.replica.snapshot_every, "max_streams": o.replica.max_streams,
                            "max_batch": o.replica.max_batch, "precision": o.replica.precision,
                            "device": o.replica.device},
                "failovers": self.failovers}

    # internals

    def require(self, name: str) -> None:
        """404 unless ``name`` is an open stream (checked before its request body is read)."""
        self._entry(name)

    def _entry(self, name: str) -> _Stream:
        entry = self.streams.get(name)
        if entry is None:
            if name in self.expired:
                raise ApiError(404, f"stream {name!r} expired after {self.expired[name]:.1f} s without a frame "
                                    f"(idle timeout {self.options.idle_timeout_s:g} s); open it again", name)
            raise ApiError(404, f"unknown stream {name!r}: open it first (POST /v1/streams)", name)
        return entry

    async def _call(self, r: _Replica, method: str, *args):
        """One call on replica ``r``; _Dead when the replica is gone (other errors propagate)."""
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError

        if not r.alive:
            raise _Dead(r.name)
        try:
            return await asyncio.wait_for(_awaitable(getattr(r.actor, method).remote(*args)),
                                          self.options.call_timeout_s)
        except (ActorDiedError, ActorUnavailableError, RayActorError) as e:
            log.warning("%s is gone (%s: %s)", r.name, type(e).__name__, str(e).splitlines()[0][:200])
            raise _Dead(r.name) from None
        except RayTaskError as e:  # the replica's method raised: its own error, with its own message and status
            cause = getattr(e, "cause", None) or e
            raise ApiError(status_for(cause), f"{r.name}: {cause}", args[0] if args and isinstance(args[0], str)
                           else None) from None

    def _live(self) -> list[_Replica]:
        """Replicas alive and loaded (a replacement counts once its runtime is up)."""
        return [r for r in self.replicas.values() if r.alive and r.pid is not None]

    async def _least_loaded(self) -> _Replica:
        """The live replica with the fewest streams and a free slot (waits up to failover_wait_s for one to be
        live; all full is a 503 at once)."""
        deadline = time.monotonic() + self.options.failover_wait_s
        slots = self.options.replica.max_streams
        while True:
            live = self._live()
            free = [r for r in live if len(r.streams) < slots]
            if free:
                return _emptiest(free)
            if live:
                raise ApiError(503, f"every state slot is in use ({len(live)} replica(s) x {slots}); close streams, "
                                    "or serve with more --max-streams or --replicas")
            if time.monotonic() > deadline:
                raise ApiError(503, "no live replica")
            await asyncio.sleep(0.05)

    async def _failover(self, dead_name: str) -> None:
        """Move the streams of ``dead_name`` (and of any replica found dead meanwhile) to live replicas."""
        async with self._failover_lock:
            r = self.replicas.get(dead_name)
            if r is None:
                return  # another request already moved its streams
            r.alive = False
            while True:
                dead = [x for x in self.replicas.values() if not x.alive]
                if not dead:
                    return
                await self._replace(dead[0])

    async def _replace(self, r: _Replica) -> None:
        t0 = time.monotonic()
        del self.replicas[r.name]
        replacement = self._spawn()
        ready = asyncio.get_running_loop().create_task(self._await_ready(replacement))
        moved = {}
        for name in sorted(r.streams):
            entry = self.streams.get(name)
            if entry is not None and entry.replica == r.name:
                moved[name] = await self._move(entry, r.name, ready)
        record = {"replica": r.name, "pid": r.pid, "at": time.time(), "streams": moved,
                  "replacement": replacement.name, "seconds": round(time.monotonic() - t0, 3)}
        self.failovers.append(record)
        log.warning("failover: %s died; %d stream(s) moved in %.2f s", r.name, len(moved), record["seconds"])

    async def _move(self, entry: _Stream, dead: str, replacement_ready) -> dict:
        snap = None
        if entry.mode == "continuous" and entry.snapshot is not None:
            snap = await _awaitable(entry.snapshot)
        lost = entry.frames - (entry.snapshot_frame if snap is not None else 0) if entry.mode == "continuous" else 0
        while True:
            live = self._live()
            if not live:  # none left: wait for the replacement
                if not await replacement_ready:
                    raise ApiError(503, f"stream {entry.name!r}: its replica {dead} died and no replica is left")
                continue
            target = _emptiest(live)
            try:
                await self._call(target, "open", entry.name, entry.mode, snap, entry.frames)
            except _Dead:
                target.alive = False  # found dead too: _failover's loop replaces it next
                continue
            break
        target.streams.add(entry.name)
        entry.replica = target.name
        entry.moves += 1
        if entry.mode == "continuous" and snap is not None:
            entry.snapshot_frame = snap["frame"]
        entry.moved = {"from": dead, "to": target.name, "frames_lost": lost,
                       "restored_from_frame": snap["frame"] if snap is not None else None}
        return entry.moved

    async def _expire_loop(self) -> None:
        period = min(1.0, self.options.idle_timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            try:
                now = time.monotonic()
                for name, e in list(self.streams.items()):
                    idle = now - e.last_seen
                    if idle > self.options.idle_timeout_s and self.streams.get(name) is e:
                        await self.close(name)
                        self.expired[name] = idle
                        while len(self.expired) > 10_000:
                            self.expired.popitem(last=False)
                        log.info("stream %r expired after %.1f s idle", name, idle)
            except Exception as e:  # never let the loop die
                log.error("idle expiry: %s: %s", type(e).__name__, e)

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.options.health_period_s)
            for r in list(self.replicas.values()):
                if not r.alive or r.pid is None:
                    continue
                try:
                    health = await self._call(r, "ping")
                    if not health["ok"]:  # its process lives but its worker is gone: replace it like a dead one
                        log.error("%s: worker failed (%s): replacing the replica", r.name, health["failure"])
                        import ray

                        ray.kill(r.actor, no_restart=True)
                        await self._failover(r.name)
                except _Dead:
                    await self._failover(r.name)
                except Exception as e:
                    log.error("health check of %s: %s: %s", r.name, type(e).__name__, e)


def _emptiest(replicas: list[_Replica]) -> _Replica:
    """The replica holding the fewest streams (ties: by name, so placement is reproducible)."""
    return min(replicas, key=lambda r: (len(r.streams), r.name))


class _Dead(Exception):
    def __init__(self, replica: str):
        super().__init__(replica)
        self.replica = replica


async def _awaitable(ref):
    return await ref
