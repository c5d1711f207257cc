"""Ray's side: the replica actor, and a local cluster that listens on loopback only.

Everything Ray starts here binds to 127.0.0.1 (``loopback_env``): Ray resolves a node address of "127.0.0.1" to
the machine's outward address unless clusters are switched off (RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0), which makes
GCS, raylets, workers, agents and Serve's proxy all listen on loopback, and a worker setup hook does the same for
the one server Serve binds to every interface regardless (each replica's inter-deployment gRPC); the dashboard is
off and usage statistics are not sent. tests/serve/test_cluster.py lists the cluster's listening sockets. Joining more machines (docs/serve.md) means starting Ray on their real addresses instead.
"""

from __future__ import annotations

import os

from .options import ReplicaOptions
from .replica import ReplicaCore

LOOPBACK = "127.0.0.1"


def loopback_env() -> dict[str, str]:
    """Environment for Ray processes that must stay on this machine's loopback."""
    return {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0",
            # Ray runs its workers at nice 15 by default; here they are the service (replicas, ingress, proxy) and
            # must not yield the CPU to every other process of the machine
            "RAY_worker_niceness": os.environ.get("RAY_worker_niceness", "0"),
            "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")}


def loopback_setup_hook() -> None:
    """Run in every Ray worker of a loopback cluster (``worker_process_setup_hook``): Ray Serve 2.x binds each
    replica's inter-deployment gRPC server to "[::]:0", every interface, whatever the node's address; here it binds
    to loopback, where the proxy (on this node, at node address 127.0.0.1) reaches it."""
    if os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        return
    try:
        from ray.serve._private import replica
    except ImportError:
        return
    bind = replica.add_port_to_grpc_server

    def bind_loopback(server, address: str):
        if address.startswith("[::]:") or address.startswith("0.0.0.0:"):
            address = LOOPBACK + ":" + address.rsplit(":", 1)[1]
        return bind(server, address)

    replica.add_port_to_grpc_server = bind_loopback


def need_ray():
    """Import ray, or say what to install."""
    try:
        import ray  # noqa: F401
        from ray import serve  # noqa: F401
    except ImportError as e:
        raise SystemExit(f"cobra-edge serve needs Ray Serve: pip install 'cobra-edge[serve]' ({e})") from None
    return ray


def start_local(num_cpus: float | None = None, object_store_mb: int = 256, address: str | None = None) -> None:
    """Connect to a running cluster (``address``, e.g. "127.0.0.1:6379" from ``ray start --head``) or start one
    on loopback in this process (``num_cpus`` logical CPUs: placement only, not threads)."""
    os.environ.update(loopback_env())  # inherited by every process Ray starts from here
    ray = need_ray()
    if ray.is_initialized():
        return
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # read at ray's import, maybe before the line above: this process too
    if address is not None:
        ray.init(address=address, log_to_driver=False)
        return
    ray.init(_node_ip_address=LOOPBACK, include_dashboard=False, num_cpus=num_cpus,
             object_store_memory=object_store_mb * 2 ** 20, log_to_driver=False,
             runtime_env={"env_vars": loopback_env(),
                          "worker_process_setup_hook": "edge.serve.cluster.loopback_setup_hook"})


class ReplicaActor(ReplicaCore):
    """The Ray actor: a ReplicaCore whose methods Ray calls from a pool of threads (``submit`` blocks its thread
    until its batch is answered; the worker thread batches across them)."""


def replica_actor(options: ReplicaOptions, num_cpus: float = 1.0, num_gpus: float = 0.0):
    import ray

    return ray.remote(ReplicaActor).options(
        num_cpus=num_cpus, num_gpus=num_gpus, max_concurrency=2 * options.max_streams + 16,
        max_restarts=0,  # a dead replica's streams move (router.py); Ray must not bring it back empty meanwhile
    )
