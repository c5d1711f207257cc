"""Per-stream Mamba state: its spec, and a preallocated pool of slots.

One stream's state is one contiguous slab of each array (batch-major, layers stacked):
    conv_state [n_layer, d_inner, d_conv - 1]   model dtype
    ssm_state  [n_layer, d_inner, d_state]      float32
It has the same size after one frame or a million: that is the point of an SSM on a robot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .batch_state import HostStates
from .checks import finite_rows, first_nonfinite
from .errors import StreamError


@dataclass(frozen=True)
class StateSpec:
    n_layer: int
    d_inner: int
    d_conv: int
    d_state: int
    conv_dtype: str = "float32"
    ssm_dtype: str = "float32"

    @property
    def conv_shape(self) -> tuple[int, int, int]:
        return (self.n_layer, self.d_inner, self.d_conv - 1)

    @property
    def ssm_shape(self) -> tuple[int, int, int]:
        return (self.n_layer, self.d_inner, self.d_state)

    @property
    def bytes_per_stream(self) -> int:
        conv = int(np.prod(self.conv_shape)) * np.dtype(self.conv_dtype).itemsize
        ssm = int(np.prod(self.ssm_shape)) * np.dtype(self.ssm_dtype).itemsize
        return conv + ssm

    def zeros(self, batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
        return (np.zeros((batch, *self.conv_shape), self.conv_dtype), np.zeros((batch, *self.ssm_shape), self.ssm_dtype))

    def to_dict(self) -> dict:
        return {"n_layer": self.n_layer, "d_inner": self.d_inner, "d_conv": self.d_conv, "d_state": self.d_state,
                "conv_dtype": self.conv_dtype, "ssm_dtype": self.ssm_dtype}

    @classmethod
    def from_dict(cls, d: dict) -> "StateSpec":
        try:
            spec = cls(int(d["n_layer"]), int(d["d_inner"]), int(d["d_conv"]), int(d["d_state"]),
                       str(d.get("conv_dtype", "float32")), str(d.get("ssm_dtype", "float32")))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"state spec {d!r} is incomplete or malformed: {e}") from e
        small = [k for k in ("n_layer", "d_inner", "d_conv", "d_state") if getattr(spec, k) < 1]
        if small:
            raise ValueError(f"state spec {d!r}: {', '.join(small)} must be >= 1")
        for k in ("conv_dtype", "ssm_dtype"):
            try:
                np.dtype(getattr(spec, k))
            except TypeError:
                raise ValueError(f"state spec {d!r}: {k} {getattr(spec, k)!r} is not a dtype name") from None
        if spec.ssm_dtype != "float32":
            raise ValueError(f"ssm_state must be float32 (got {spec.ssm_dtype}): the recurrence drifts in half precision")
        return spec


@dataclass(frozen=True)
class StateSnapshot:
    """A copy of one stream's slab and the spec it was taken under; restoring it costs one memcpy.

    conv [n_layer, d_inner, d_conv - 1] (spec.conv_dtype), ssm [n_layer, d_inner, d_state] (float32)."""

    conv: np.ndarray
    ssm: np.ndarray
    spec: StateSpec | None = None  # None: made by hand; then only its arrays are checked against the pool's spec

    def problem(self, spec: StateSpec) -> str | None:
        """Why this snapshot cannot be restored into a pool of ``spec`` (None when it can): another spec, arrays of
        another shape or dtype (no reshaping or casting: a state of another layout with as many elements, or
        float64 values that would overflow float32, are refused), or NaN / infinite values."""
        if self.spec is not None and self.spec != spec:
            return f"snapshot spec {self.spec} differs from the stream's {spec}"
        for name, arr, shape, dtype in (("conv", self.conv, spec.conv_shape, spec.conv_dtype),
                                        ("ssm", self.ssm, spec.ssm_shape, spec.ssm_dtype)):
            if not isinstance(arr, np.ndarray):
                return f"snapshot {name} is a {type(arr).__name__}, expected a numpy array {dtype}{list(shape)}"
            if arr.shape != shape or arr.dtype != np.dtype(dtype):
                return f"snapshot {name} is {arr.dtype}{list(arr.shape)}, the stream's spec needs {dtype}{list(shape)}"
        bad = first_nonfinite(conv=self.conv, ssm=self.ssm)
        return f"snapshot {bad}" if bad else None


class StatePool:
    """``max_streams`` slots preallocated as two arrays; a stream owns a slot; nothing moves after start.

    ``conv[slot]`` and ``ssm[slot]`` are contiguous views, so a batch of one stream needs no copy:
    ``pool.view(slot)`` returns ``[1, ...]`` views straight into the pool.

    A batch's states go through ``start_states`` (gather), ``store`` (scatter) and ``slot_finite``: the same methods
    as ``DeviceStatePool`` (edge/device_state.py), whose slab lives on the sessions' device.
    """

    on_device = False

    def __init__(self, spec: StateSpec, max_streams: int):
        if max_streams < 1:
            raise ValueError(f"max_streams must be >= 1, got {max_streams}")
        self.spec = spec
        self.conv, self.ssm = spec.zeros(max_streams)
        self._free = list(range(max_streams - 1, -1, -1))

    @property
    def capacity(self) -> int:
        return self.conv.shape[0]

    @property
    def in_use(self) -> int:
        return self.capacity - len(self._free)

    def allocate(self) -> int:
        if not self._free:
            raise StreamError(f"all {self.capacity} state slots are in use; raise max_streams or close a stream")
        slot = self._free.pop()
        self.reset(slot)
        return slot

    def release(self, slot: int) -> None:
        self._check(slot)
        if slot in self._free:
            raise StreamError(f"state slot {slot} is already free")
        self._free.append(slot)

    def reset(self, slot: int) -> None:
        """Zero one slab in place."""
        self._check(slot)
        self.conv[slot] = 0
        self.ssm[slot] = 0

    def read(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        """One slab [n_layer, ...] (views into the pool)."""
        self._check(slot)
        return self.conv[slot], self.ssm[slot]

    def slot_finite(self, slot: int) -> bool:
        self._check(slot)
        return bool(finite_rows(self.conv[slot:slot + 1], self.ssm[slot:slot + 1])[0])

    def start_states(self, starts) -> HostStates:
        """A batch's start states (copies: the pool is written only after success): per row None (zeros), a slot
        (its state) or a (conv, ssm) pair (a fork's snapshot)."""
        conv, ssm = self.spec.zeros(len(starts))
        for j, s in enumerate(starts):
            if isinstance(s, tuple):
                conv[j], ssm[j] = np.asarray(s[0]).reshape(conv.shape[1:]), np.asarray(s[1]).reshape(ssm.shape[1:])
            elif s is not None:
                conv[j], ssm[j] = self.conv[s], self.ssm[s]
        return HostStates(conv, ssm)

    def empty_states(self, n: int) -> HostStates:
        return HostStates(*self.spec.zeros(n))

    def store(self, slot: int, states: HostStates, row: int) -> None:
        """The slot takes row ``row`` of a batch's states."""
        self.write(slot, states.conv[row], states.ssm[row])

    def view(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        """[1, ...] views of one slab (no copy)."""
        self._check(slot)
        return self.conv[slot:slot + 1], self.ssm[slot:slot + 1]

    def write(self, slot: int, conv: np.ndarray, ssm: np.ndarray) -> None:
        """Store a [1, ...] (or unbatched) state into a slab."""
        self._check(slot)
        self.conv[slot] = conv.reshape(self.spec.conv_shape)
        self.ssm[slot] = ssm.reshape(self.spec.ssm_shape)

    def snapshot(self, slot: int) -> StateSnapshot:
        self._check(slot)
        return StateSnapshot(self.conv[slot].copy(), self.ssm[slot].copy(), self.spec)

    def restore(self, slot: int, snap: StateSnapshot, stream: str = "?") -> None:
        """All or nothing: every check passes before either array is written (else StreamError naming the stream
        and both specs, and the slot is unchanged)."""
        self._check(slot)
        if not isinstance(snap, StateSnapshot):
            raise StreamError(f"stream {stream!r}: restore takes a StateSnapshot, got {type(snap).__name__}")
        problem = snap.problem(self.spec)
        if problem:
            raise StreamError(f"stream {stream!r}: cannot restore: {problem}")
        self.write(slot, snap.conv, snap.ssm)  # (on the device for DeviceStatePool)

    def _check(self, slot: int) -> None:
        if not 0 <= slot < self.capacity:
            raise StreamError(f"state slot {slot} out of range [0, {self.capacity})")
