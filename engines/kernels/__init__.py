"""cobra-edge's native CPU kernels for ONNX Runtime: ``cobra_edge.SelectiveScan`` (prefill: Mamba-1's selective
scan fused into one pass over the tokens), ``cobra_edge.SelectiveStep`` and ``cobra_edge.ConvStep`` (the decode
step's state update and conv window). C++ sources beside this file, built by ``pip install`` as
``_cobra_kernels*.so``.

ONNX Runtime loads the library per session (``SessionOptions.register_custom_ops_library``); the graphs'
``cobra_edge`` nodes then run the kernels. Without the library (no C++ compiler at install, another backend,
``COBRA_EDGE_KERNELS=off``) the same nodes run their portable ONNX function bodies: same graph files, same
contract, slower. ``status()`` says which and why.

    COBRA_EDGE_KERNELS=off          never register the library
    COBRA_EDGE_KERNELS=/path/x.so   use this build instead of the installed one
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import os
from dataclasses import dataclass
from pathlib import Path

ENV = "COBRA_EDGE_KERNELS"
HERE = Path(__file__).resolve().parent
OPS = ("SelectiveScan", "SelectiveStep", "ConvStep", "CausalConv")  # the cobra_edge ops the library implements (export/fused.py)
OP = "cobra_edge.SelectiveScan"  # the prefill's op


@dataclass(frozen=True)
class KernelLibrary:
    path: Path
    isa: str  # the instruction set the kernels use on this CPU: "avx2+fma" or "baseline"

    def describe(self) -> str:
        return f"cobra-edge fused kernels ({self.isa}, {self.path.name})"


def _installed() -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = HERE / f"_cobra_kernels{suffix}"
        if path.is_file():
            return path
    return None


SCAN_INPUTS = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "h")


class _ScanArgs(ctypes.Structure):  # CobraScanArgs of selective_scan.h
    _fields_ = ([(k, ctypes.c_int64) for k in ("b", "l", "d", "n")]
                + [(k, ctypes.c_void_p) for k in ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "h0", "y", "h_out")])


@functools.cache
def _cdll(path: str) -> ctypes.CDLL:
    return ctypes.CDLL(path)


def selective_scan(lib: KernelLibrary, x, dt, A, B, C, D, z, dt_bias, h):
    """Run the kernel directly on numpy arrays, on the calling thread (no ONNX Runtime): tests and tools.
    Shapes as the op: x, dt, z [b, l, d]; A [d, n]; B, C [b, l, n]; D, dt_bias [d]; h [b, d, n]; float32
    -> (y [b, l, d], h_out [b, d, n])."""
    import numpy as np

    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in (x, dt, A, B, C, D, z, dt_bias, h)]
    b, l, d = arrays[0].shape
    n = arrays[2].shape[1]
    want = {"x": (b, l, d), "dt": (b, l, d), "A": (d, n), "B": (b, l, n), "C": (b, l, n), "D": (d,), "z": (b, l, d),
            "dt_bias": (d,), "h": (b, d, n)}
    for name, a in zip(SCAN_INPUTS, arrays):
        if a.shape != want[name]:
            raise ValueError(f"selective scan: {name!r} has shape {a.shape}, expected {want[name]}")
    y, h_out = np.empty((b, l, d), np.float32), np.empty((b, d, n), np.float32)
    args = _ScanArgs(b, l, d, n, *[a.ctypes.data for a in arrays], y.ctypes.data, h_out.ctypes.data)
    if _cdll(str(lib.path)).cobra_selective_scan(ctypes.byref(args)) != 0:
        raise ValueError(f"selective scan: d_state {n} is outside 1..64, which the kernel handles")
    return y, h_out


@functools.cache
def _open(path: str) -> KernelLibrary:
    try:
        lib = _cdll(path)
        lib.cobra_kernel_isa.restype = ctypes.c_char_p
        isa = lib.cobra_kernel_isa().decode()
        lib.RegisterCustomOps  # noqa: B018 - the entry point ONNX Runtime will call
    except (OSError, AttributeError) as e:
        raise KernelUnavailable(f"{path} is not a cobra-edge kernel library: {e}") from e
    return KernelLibrary(Path(path), isa)


class KernelUnavailable(RuntimeError):
    """The kernel library was asked for by path and cannot be used."""


def library() -> KernelLibrary | None:
    """The kernel library to register with ONNX Runtime CPU sessions, or None (see ``status``). A path given in
    $COBRA_EDGE_KERNELS that is not a usable library is an error, not a silent fallback."""
    choice = os.environ.get(ENV, "").strip()
    if choice.lower() in ("off", "0", "no", "false"):
        return None
    if choice:
        if not Path(choice).is_file():
            raise KernelUnavailable(f"${ENV}={choice}: no such file")
        return _open(str(Path(choice).resolve()))
    path = _installed()
    return _open(str(path)) if path else None


def status() -> str:
    """One line: what runs ``cobra_edge`` nodes on ONNX Runtime's CPU provider here, and why."""
    choice = os.environ.get(ENV, "").strip()
    try:
        lib = library()
    except KernelUnavailable as e:
        return f"error: {e}"
    if lib:
        return lib.describe()
    if choice:
        return f"portable ONNX function bodies (${ENV}={choice})"
    return ("portable ONNX function bodies (the kernel library was not built: reinstall with a C++ compiler present, "
            "`pip install -e .`)")
