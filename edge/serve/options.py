"""The serve application's configuration: a replica's, and the whole application's (``cobra-edge serve``'s options).

Both are plain dataclasses, pickled to the Ray actors that read them; checked when made.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..checks import as_count
from ..imageheader import DEFAULT_MAX_PIXELS


@dataclass
class ReplicaOptions:
    max_streams: int = 64  # state slots of this replica
    max_batch: int = 16  # frames answered together at most
    threads: int | None = None  # ONNX Runtime intra-op threads per graph (None: its default)
    precision: str = "fp32"
    device: str = "cpu"
    snapshot_every: int = 1  # continuous streams: a snapshot with every n-th answered frame (0: never)
    max_pixels: int = DEFAULT_MAX_PIXELS

    def __post_init__(self):
        self.max_streams = as_count(self.max_streams, "max_streams", 1)
        self.max_batch = as_count(self.max_batch, "max_batch", 1)
        self.snapshot_every = as_count(self.snapshot_every, "snapshot_every", 0)
        self.max_pixels = as_count(self.max_pixels, "max_pixels", 1)



@dataclass
class ServeOptions:
    replicas: int = 1
    replica_cpus: float = 1.0  # Ray CPU resource per replica actor (placement; threads are ``replica.threads``)
    replica_gpus: float = 0.0  # num_gpus per replica (GPU providers: device cuda / tensorrt)
    replica: ReplicaOptions = field(default_factory=ReplicaOptions)
    idle_timeout_s: float = 60.0  # a stream with no frame this long is closed and its slot freed
    health_period_s: float = 1.0  # how often idle replicas are checked for life
    failover_wait_s: float = 120.0  # a request waits this long for a live replica before failing with 503
    call_timeout_s: float = 300.0

    def __post_init__(self):
        if isinstance(self.replicas, bool) or not isinstance(self.replicas, int) or self.replicas < 1:
            raise ValueError(f"replicas must be an integer >= 1, got {self.replicas!r}")
        for name in ("idle_timeout_s", "health_period_s", "failover_wait_s", "call_timeout_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
                raise ValueError(f"{name} must be a number > 0, got {v!r}")
        if self.replica_cpus < 0 or self.replica_gpus < 0:
            raise ValueError("replica_cpus and replica_gpus must be >= 0")

    @property
    def cluster_cpus(self) -> float:
        """Logical CPUs a local cluster needs: the replicas', plus 2 for Serve's controller, proxy and ingress."""
        return self.replicas * self.replica_cpus + 2
