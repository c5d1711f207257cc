"""``cobra-edge serve [DIR]``: the Ray Serve application on a local loopback cluster, or on one you started.

    cobra-edge serve [DIR] --replicas 2 --port 8000 --threads 1 --max-streams 64 --snapshot-every 1 \
                     --idle-timeout 60 [--address 127.0.0.1:6379] [--num-gpus 0.5 --device cuda]

DIR: an exported artifact (default: the embedded trained tiny model, exported once as ``cobra-edge demo`` does).
Prints the URL and the replicas once every replica has loaded its runtime, then serves until SIGINT / SIGTERM,
and stops Serve and the cluster it started. The JSON API and the Python client: docs/serve.md.
"""

from __future__ import annotations

import sys
import time

from ..argtypes import device_arg, non_negative_int, positive_float, positive_int

DEFAULT_PORT = 8000


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="serve many cameras' streams from a Ray Serve cluster over HTTP (docs/serve.md)",
                       description="Replicas each hold a runtime and its state pool; every stream stays on one "
                                   "replica, and moves, restored from its last snapshot, when that replica dies. "
                                   "HTTP on 127.0.0.1 by default; JSON API in docs/serve.md.")
    p.add_argument("dir", nargs="?", default=None, help="artifact directory (default: the embedded trained model)")
    p.add_argument("--replicas", type=positive_int, default=1, help="replica actors, each with its own runtime")
    p.add_argument("--threads", type=positive_int, default=1, help="ONNX Runtime intra-op threads per graph, per "
                                                                   "replica")
    p.add_argument("--replica-cpus", type=positive_float, default=1.0,
                   help="Ray CPU resource per replica (placement across machines)")
    p.add_argument("--num-gpus", type=positive_float, default=None, help="Ray GPUs per replica (with --device "
                                                                         "cuda or tensorrt)")
    device_arg(p)
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8", "int4"))
    p.add_argument("--max-streams", type=positive_int, default=64, help="state slots per replica")
    p.add_argument("--max-batch", type=positive_int, default=16, help="frames answered together at most")
    p.add_argument("--snapshot-every", type=non_negative_int, default=1,
                   help="continuous streams: keep a snapshot of the state every N answered frames (0: never; a "
                        "moved stream then restarts from zero)")
    p.add_argument("--idle-timeout", type=positive_float, default=60.0, metavar="S",
                   help="close a stream that sent no frame for S seconds, freeing its slot")
    p.add_argument("--host", default="127.0.0.1", help="HTTP address (127.0.0.1: this machine only)")
    p.add_argument("--port", type=positive_int, default=DEFAULT_PORT)
    p.add_argument("--address", default=None,
                   help="join a running Ray cluster (e.g. 127.0.0.1:6379 from 'ray start --head'); default: start "
                        "one in this process, on loopback")
    p.add_argument("--duration", type=positive_float, default=None, metavar="S",
                   help="stop after S seconds (default: until SIGINT / SIGTERM)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    from ..embedded import embedded_artifact
    from ..manifest import Manifest
    from ..signals import stop_on_signals
    from .app import run, shutdown
    from .cluster import need_ray, start_local
    from .options import ReplicaOptions, ServeOptions

    need_ray()
    if args.num_gpus and args.device == "cpu":
        raise ValueError("--num-gpus reserves GPUs for replicas that use them: add --device cuda or tensorrt")
    artifact = str(args.dir) if args.dir else str(embedded_artifact())
    Manifest.load(artifact)  # a wrong directory is one line and exit 2 here, before a cluster starts
    options = ServeOptions(
        replicas=args.replicas, replica_cpus=args.replica_cpus, replica_gpus=args.num_gpus or 0.0,
        idle_timeout_s=args.idle_timeout,
        replica=ReplicaOptions(max_streams=args.max_streams, max_batch=args.max_batch, threads=args.threads,
                               precision=args.precision, device=args.device, snapshot_every=args.snapshot_every))
    start_local(num_cpus=options.cluster_cpus, address=args.address)
    try:
        t0 = time.monotonic()
        url = run(artifact, options, port=args.port, host=args.host)
        from .client import ServeClient

        info = ServeClient(url).info()
        print(f"cobra-edge serve: {url} ({len(info['replicas'])} replica(s) of {artifact}, ready in "
              f"{time.monotonic() - t0:.1f} s)")
        for r in info["replicas"]:
            print(f"  {r['replica']}: pid {r.get('pid')}, {r.get('slots')} slots, "
                  f"{r.get('rss_bytes', 0) / 2**20:.0f} MiB resident")
        print("  open a stream:  curl -s -X POST " + url + "/v1/streams -d '{\"stream\": \"cam0\"}'", flush=True)
        with stop_on_signals() as sig:
            sig.stop.wait(args.duration)
        return sig.exit_code or 0
    finally:
        shutdown()
        print("cobra-edge serve: stopped", file=sys.stderr)
