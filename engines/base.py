"""The one small protocol every backend implements, and the input validation they share.

An engine runs one graph. It declares its tensors (``inputs``/``outputs``: name -> ``TensorSpec``) and
``run(feeds) -> outputs``. Shapes hold ints for fixed dimensions and strings for dynamic ones ("B", "L").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Protocol, runtime_checkable

import numpy as np


class EngineError(RuntimeError):
    """A graph could not be loaded or run."""


class EngineInputError(EngineError, ValueError):
    """A feed does not match the graph's declared input (names the graph, tensor, expected and received)."""


class BackendUnavailable(EngineError, ImportError):
    """The named backend is unknown, or its package is not installed (names what to install)."""


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: str  # numpy dtype name: "float32", "float16", "int64", "uint8"
    shape: tuple  # int for a fixed dimension, str (or None) for a dynamic one

    def describe(self) -> str:
        dims = ", ".join(str(d) for d in self.shape)
        return f"{self.dtype}[{dims}]"

    def to_dict(self) -> dict:
        return {"dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, name: str, d: Mapping) -> "TensorSpec":
        return cls(name=name, dtype=str(d["dtype"]), shape=tuple(d["shape"]))

    def matches(self, other: "TensorSpec") -> bool:
        """Same dtype, rank and fixed dimensions (dynamic dimensions match anything dynamic)."""
        if self.dtype != other.dtype or len(self.shape) != len(other.shape):
            return False
        for a, b in zip(self.shape, other.shape):
            if isinstance(a, int) != isinstance(b, int):
                return False
            if isinstance(a, int) and a != b:
                return False
        return True


@runtime_checkable
class Engine(Protocol):
    name: str
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]: ...


def validate_feeds(graph: str, specs: Mapping[str, TensorSpec], feeds: Mapping[str, np.ndarray]) -> None:
    """Raise ``EngineInputError`` naming the first problem: a missing or unknown tensor, a wrong dtype,
    rank or fixed dimension, or one dynamic symbol bound to two sizes (e.g. B differs between inputs)."""
    missing = [n for n in specs if n not in feeds]
    if missing:
        raise EngineInputError(f"graph {graph!r}: missing input(s) {missing}; expected {sorted(specs)}")
    unknown = [n for n in feeds if n not in specs]
    if unknown:
        raise EngineInputError(f"graph {graph!r}: unknown input(s) {unknown}; expected {sorted(specs)}")
    bound: dict[str, tuple[int, str]] = {}
    for name, spec in specs.items():
        arr = feeds[name]
        if not isinstance(arr, np.ndarray):
            raise EngineInputError(
                f"graph {graph!r}, input {name!r}: expected a numpy array {spec.describe()}, got {type(arr).__name__}"
            )
        got = f"{arr.dtype}{list(arr.shape)}"
        if arr.dtype != np.dtype(spec.dtype):
            raise EngineInputError(f"graph {graph!r}, input {name!r}: expected {spec.describe()}, got {got} (wrong dtype)")
        if arr.ndim != len(spec.shape):
            raise EngineInputError(f"graph {graph!r}, input {name!r}: expected {spec.describe()}, got {got} (wrong rank)")
        for axis, (want, have) in enumerate(zip(spec.shape, arr.shape)):
            if isinstance(want, int):
                if want != have:
                    raise EngineInputError(
                        f"graph {graph!r}, input {name!r}: expected {spec.describe()}, got {got} (axis {axis})"
                    )
            elif want:
                if have == 0:
                    raise EngineInputError(f"graph {graph!r}, input {name!r}: axis {axis} ({want}) is empty in {got}")
                first = bound.setdefault(want, (have, name))
                if first[0] != have:
                    raise EngineInputError(
                        f"graph {graph!r}, input {name!r}: {want} = {have} here but {first[0]} in {first[1]!r}"
                    )
