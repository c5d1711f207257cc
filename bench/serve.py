"""The serve application against one in-process replica, side by side: frames per second and latency for 4, 16
and 64 camera streams, with 1 and 2 replicas; failover time; memory per replica.

    python -m bench.serve [ARTIFACT] [--streams 4 16 64] [--replicas 1 2] [--seconds 10] [--out bench/results]

Each stream is a client thread sending its next frame as soon as its previous answer came (closed loop: the
offered load is as high as the service takes). Contenders, in turns for each stream count:
- ``serve``: HTTP to the Serve ingress on 127.0.0.1, the router, a Ray actor call to the stream's replica, which
  batches across its streams: the cluster path.
- ``serve-robots``: the same, but each client is a robot with 4 cameras sending their frames in one request
  (``POST /v1/frames``), as ``cobra-edge ros --serve`` does with each batch of its scheduler.
- ``local``: the same client threads calling one ReplicaCore in this process (no HTTP, no Ray): what a node per
  board does, so the difference is the cluster's overhead.
Request bodies are encoded (PNG, base64, JSON) before timing starts. Failover: with 16 continuous streams busy,
one replica is killed (SIGKILL); the time until every one of its streams is answered again is measured. Memory:
each replica's resident set after the runs. On a 2-core machine the clients, the ingress, Ray and the replicas
share the same two cores: a second replica adds no compute here, only failover; the JSON records the load.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edge.world.items import make_item
from edge.world.questions import SINGLE_FRAME

from .timing import RESULTS_DIR, machine_info

TOKENS = 4
ROBOT_CAMERAS = 4  # serve-robots: each client sends 4 cameras' frames in one POST /v1/frames


def bodies(n_streams: int, per_stream: int = 4) -> list[list[dict]]:
    """Per stream, ``per_stream`` frame requests (world frames and their questions), as JSON-able bodies."""
    from edge.serve.protocol import encode_frame

    out = []
    for s in range(n_streams):
        rows = []
        for k in range(per_stream):
            item = make_item(SINGLE_FRAME[(s + k) % len(SINGLE_FRAME)], (31, s, k))
            rows.append({**encode_frame(item.frames()[-1]), "prompt": item.question.prompt,
                         "max_new_tokens": TOKENS})
        out.append(rows)
    return out


def closed_loop(send, units: list[tuple[str, ...]], data: list[list], seconds: float) -> dict:
    """Every unit (one stream, or a robot's cameras sent together) sends its next request as soon as its previous
    answer came, for ``seconds``; ``data[u][k]`` is unit u's k-th request. -> frames per second, per-frame
    latency percentiles (a request's round trip, for each of its frames), errors."""
    start = time.monotonic() + 0.2
    stop_at = start + seconds

    def loop(u):
        lat, errors, k = [], 0, 0
        while time.monotonic() < start:
            time.sleep(0.005)
        while time.monotonic() < stop_at:
            t0 = time.perf_counter()
            ok = send(units[u], data[u][k % len(data[u])])
            lat += [(time.perf_counter() - t0) * 1e3] * ok
            errors += len(units[u]) - ok
            k += 1
        return lat, errors

    with ThreadPoolExecutor(len(units)) as pool:
        results = list(pool.map(loop, range(len(units))))
    lat = np.array([x for r, _ in results for x in r])
    return {"answered": int(lat.size), "errors": int(sum(e for _, e in results)),
            "fps": round(lat.size / seconds, 2),
            "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
            "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None}


def serve_sender(client):
    def send(unit, body):
        status, out = client.request("POST", f"/v1/streams/{unit[0]}/frames", raw=body)
        return int(status == 200 and out.get("status") == "answered")
    return send


def robots_sender(client):
    def send(unit, body):
        status, out = client.request("POST", "/v1/frames", raw=body)
        return sum(r.get("status") == "answered" for r in out.get("results", [])) if status == 200 else 0
    return send


def local_sender(core):
    from edge.serve.protocol import FrameRequest

    def send(unit, body):
        return int(core.submit(FrameRequest.parse(unit[0], json.loads(body))).get("status") == "answered")
    return send


def failover(client, n_streams: int, data, seconds_before: float = 3.0) -> dict:
    """16 continuous streams busy; SIGKILL the replica of stream 0; -> seconds until each of its streams is
    answered again (max and median), and what the router recorded."""
    names = [f"fo{i}" for i in range(n_streams)]
    for n in names:
        client.open(n, "continuous")
    stop = threading.Event()
    answered_after: dict[str, float] = {}
    kill = {}

    def loop(i):
        k = 0
        while not stop.is_set():
            status, out = client.request("POST", f"/v1/streams/{names[i]}/frames", raw=data[i][k % len(data[i])])
            k += 1
            if "t" in kill and status == 200 and names[i] not in answered_after and time.monotonic() > kill["t"]:
                answered_after[names[i]] = time.monotonic() - kill["t"]

    pool = ThreadPoolExecutor(n_streams)
    futures = [pool.submit(loop, i) for i in range(n_streams)]
    time.sleep(seconds_before)
    table = {s["stream"]: s["replica"] for s in client.streams()}
    victim = table[names[0]]
    pid = next(r["pid"] for r in client.info()["replicas"] if r["replica"] == victim)
    moved = [n for n in names if table[n] == victim]
    kill["t"] = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 120
    while not all(n in answered_after for n in moved) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    for f in futures:
        f.result(timeout=120)
    pool.shutdown()
    record = next((f for f in client.info()["failovers"] if f["replica"] == victim), None)
    for n in names:
        client.close(n)
    times = [answered_after.get(n) for n in moved]
    return {"streams": n_streams, "moved": len(moved), "answered_again": sum(t is not None for t in times),
            "max_s": round(max(t for t in times if t is not None), 3) if any(times) else None,
            "median_s": round(float(np.median([t for t in times if t is not None])), 3) if any(times) else None,
            "router_seconds": record and record["seconds"],
            "frames_lost": record and sorted({m["frames_lost"] for m in record["streams"].values()})}


def run(artifact: str, streams=(4, 16, 64), replicas=(1, 2), seconds: float = 10.0, out_dir: Path = RESULTS_DIR,
        say=print) -> tuple[dict, Path]:
    from edge.serve.app import local_service
    from edge.serve.client import ServeClient
    from edge.serve.options import ReplicaOptions, ServeOptions
    from edge.serve.replica import ReplicaCore

    top = max(streams)
    dicts = bodies(max(top, 16))
    data = [[json.dumps(b).encode() for b in rows] for rows in dicts]
    load_before = [round(v, 2) for v in os.getloadavg()]
    opts = ReplicaOptions(max_streams=max(top, 16), max_batch=16, threads=1, snapshot_every=1)
    core = ReplicaCore("local", artifact, opts)
    rows, fail, memory = [], [], {}
    for r in replicas:
        with local_service(artifact, ServeOptions(replicas=r, replica=opts, idle_timeout_s=600)) as url:
            client = ServeClient(url, timeout_s=300)
            for n in streams:
                names = [f"s{i}" for i in range(n)]
                for name in names:
                    client.open(name, "reset")
                    core.open(name, "reset")
                single = [(name,) for name in names]
                robots = [tuple(names[i:i + ROBOT_CAMERAS]) for i in range(0, n, ROBOT_CAMERAS)]
                robot_data = [[json.dumps({"frames": [{"stream": name, **dicts[names.index(name)][k]}
                                                      for name in unit]}).encode() for k in range(4)]
                              for unit in robots]
                for contender, send, units, payload in (
                        ("serve", serve_sender(client), single, data),
                        ("serve-robots", robots_sender(client), robots, robot_data),
                        ("local", local_sender(core), single, data)):
                    closed_loop(send, units, payload, 1.0)  # warm-up
                    res = closed_loop(send, units, payload, seconds)
                    rows.append({"contender": contender, "replicas": r if contender != "local" else 1,
                                 "streams": n, "requests_per_round": len(units), **res,
                                 "load": [round(v, 2) for v in os.getloadavg()]})
                    say(f"{contender:12s} replicas={rows[-1]['replicas']} streams={n:3d}: {res['fps']:7.1f} fps, "
                        f"p50 {res['p50_ms']} ms, p99 {res['p99_ms']} ms, errors {res['errors']}")
                for name in names:
                    client.close(name)
                    core.close(name)
            memory[f"{r}_replicas"] = [{"replica": x["replica"], "rss_mib": round(x["rss_bytes"] / 2 ** 20, 1),
                                        "slots": x["slots"], "bytes_per_stream": x["bytes_per_stream"]}
                                       for x in client.info()["replicas"]]
            fail.append({"replicas": r, **failover(client, 16, data)})
            say(f"failover with {r} replica(s): {fail[-1]}")
    core.stop()
    result = {"benchmark": "serve", "artifact": str(artifact), "seconds_per_cell": seconds, "max_new_tokens": TOKENS,
              "machine": machine_info(1), "load_before": load_before,
              "load_after": [round(v, 2) for v in os.getloadavg()], "rows": rows, "failover": fail,
              "memory": memory, "local_replica_rss_mib": round(core.info()["rss_bytes"] / 2 ** 20, 1)}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"serve-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=1))
    return result, path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("artifact", nargs="?", default=None, help="default: the embedded trained model")
    p.add_argument("--streams", type=int, nargs="+", default=[4, 16, 64])
    p.add_argument("--replicas", type=int, nargs="+", default=[1, 2])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=RESULTS_DIR)
    a = p.parse_args(argv)
    if a.artifact is None:
        from edge.embedded import embedded_artifact

        a.artifact = str(embedded_artifact())
    _, path = run(a.artifact, tuple(a.streams), tuple(a.replicas), a.seconds, a.out)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
