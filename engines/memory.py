"""Rows of ONNX Runtime ``OrtValue``s on the device a session runs on, moved without passing through numpy: what
keeps the Mamba state on the GPU between frames and tokens (the runtime's state pool, edge/device_state.py, and the
decode loop, engines/onnxruntime_backend.py ``OrtLoop``).

A buffer is an ``OrtValue`` [rows, ...] allocated by ONNX Runtime on the device ("cpu" or "cuda"); a row is one
stream's slab. Four primitives move bytes, and everything else is written over them, so the CPU runs the same code
as the GPU with CPU OrtValues (the tests' way of proving the device path on a machine without a GPU):

    device   copy(dst, src, bytes)            zero(ptr, bytes)     nonfinite(ptr, rows, row_len, itemsize)
    cpu      ctypes.memmove                   ctypes.memset        numpy over the memory
    cuda     cuMemcpy (unified addressing)    cuMemsetD8           the check kernel (gpu_finite.h): one flag per row
             through cobra-edge's CUDA library (engines/kernels/cuda.py)

The CUDA primitives synchronise before returning, so they are ordered with the sessions' runs, which ONNX Runtime
also completes before returning. The cuda column is written but not yet run on a GPU.
"""

from __future__ import annotations

import ctypes
from typing import Sequence

import numpy as np
import onnxruntime as ort

_ITEMSIZE = {"tensor(float)": 4, "tensor(float16)": 2, "tensor(double)": 8, "tensor(int64)": 8, "tensor(int32)": 4,
             "tensor(uint8)": 1, "tensor(bool)": 1}
_DTYPE = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
          "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(bool)": np.bool_}


def _runs(dst_rows: Sequence[int], src_rows: Sequence[int]) -> list[tuple[int, int, int]]:
    """(dst, src, count) for runs where both row lists go up by one: one copy per run, not per row."""
    out: list[list[int]] = []
    for d, s in zip(dst_rows, src_rows):
        if out and out[-1][0] + out[-1][2] == d and out[-1][1] + out[-1][2] == s:
            out[-1][2] += 1
        else:
            out.append([int(d), int(s), 1])
    return [tuple(r) for r in out]


class DeviceMemory:
    """Buffers and row moves on one device; subclasses give the four primitives."""

    device = "cpu"

    # primitives
    def copy(self, dst: int, src: int, nbytes: int) -> None: ...
    def zero(self, ptr: int, nbytes: int) -> None: ...
    def nonfinite(self, ptr: int, rows: int, row_len: int, dtype: np.dtype) -> np.ndarray: ...

    # buffers
    def empty(self, shape: Sequence[int], dtype) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_shape_and_type(list(shape), np.dtype(dtype), self.device, 0)

    def zeros(self, shape: Sequence[int], dtype) -> ort.OrtValue:
        v = self.empty(shape, dtype)
        self.zero(v.data_ptr(), _nbytes(v))
        return v

    def from_host(self, array: np.ndarray) -> ort.OrtValue:
        """A device copy of a host array."""
        array = np.ascontiguousarray(array)
        v = self.empty(array.shape, array.dtype)
        self.copy(v.data_ptr(), array.ctypes.data, array.nbytes)
        return v

    def to_host(self, v: ort.OrtValue, rows: Sequence[int] | None = None) -> np.ndarray:
        """A host copy of a buffer, or of some of its rows."""
        shape, dtype = v.shape(), _DTYPE[v.data_type()]
        rows = range(shape[0]) if rows is None else rows
        out = np.empty((len(rows), *shape[1:]), dtype)
        step = _row_bytes(v)
        for d, s, n in _runs(range(len(rows)), rows):
            self.copy(out.ctypes.data + d * step, v.data_ptr() + s * step, n * step)
        return out

    def write_rows(self, dst: ort.OrtValue, rows: Sequence[int], array: np.ndarray) -> None:
        """dst[rows] = array (host), row by row."""
        array = np.ascontiguousarray(array, _DTYPE[dst.data_type()]).reshape(len(rows), *dst.shape()[1:])
        step = _row_bytes(dst)
        for d, s, n in _runs(rows, range(len(rows))):
            self.copy(dst.data_ptr() + d * step, array.ctypes.data + s * step, n * step)

    def copy_rows(self, dst: ort.OrtValue, dst_rows: Sequence[int], src: ort.OrtValue, src_rows: Sequence[int]) -> None:
        """dst[dst_rows] = src[src_rows], on the device."""
        step = _row_bytes(dst)
        if step != _row_bytes(src) or dst.data_type() != src.data_type():
            raise ValueError(f"copy_rows: rows of {dst.data_type()}{dst.shape()} and {src.data_type()}{src.shape()} differ")
        for d, s, n in _runs(dst_rows, src_rows):
            self.copy(dst.data_ptr() + d * step, src.data_ptr() + s * step, n * step)

    def gather(self, src: ort.OrtValue, rows: Sequence[int]) -> ort.OrtValue:
        """A new buffer of src's rows, in order."""
        out = self.empty((len(rows), *src.shape()[1:]), _DTYPE[src.data_type()])
        self.copy_rows(out, range(len(rows)), src, rows)
        return out

    def zero_rows(self, dst: ort.OrtValue, rows: Sequence[int]) -> None:
        step = _row_bytes(dst)
        for d, _, n in _runs(rows, rows):
            self.zero(dst.data_ptr() + d * step, n * step)

    def rows_finite(self, v: ort.OrtValue, rows: Sequence[int] | None = None) -> np.ndarray:
        """bool [rows]: the row holds no NaN or infinity (all rows, or the given ones)."""
        shape = v.shape()
        dtype = np.dtype(_DTYPE[v.data_type()])
        if dtype not in (np.float32, np.float16):
            raise ValueError(f"rows_finite: float32 or float16 buffers, got {v.data_type()}")
        row_len = int(np.prod(shape[1:], dtype=np.int64))
        bad = self.nonfinite(v.data_ptr(), shape[0], row_len, dtype)
        return ~(bad if rows is None else bad[np.asarray(rows, dtype=np.int64)])


def _nbytes(v: ort.OrtValue) -> int:
    return int(np.prod(v.shape(), dtype=np.int64)) * _ITEMSIZE[v.data_type()]


def _row_bytes(v: ort.OrtValue) -> int:
    return int(np.prod(v.shape()[1:], dtype=np.int64)) * _ITEMSIZE[v.data_type()]


class HostMemory(DeviceMemory):
    """CPU OrtValues: the primitives are memmove, memset and numpy."""

    device = "cpu"

    def copy(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            ctypes.memmove(dst, src, nbytes)

    def zero(self, ptr: int, nbytes: int) -> None:
        if nbytes:
            ctypes.memset(ptr, 0, nbytes)

    def nonfinite(self, ptr: int, rows: int, row_len: int, dtype: np.dtype) -> np.ndarray:
        if rows * row_len == 0:
            return np.zeros(rows, bool)
        buf = (ctypes.c_char * (rows * row_len * dtype.itemsize)).from_address(ptr)
        data = np.frombuffer(buf, dtype).reshape(rows, row_len)
        return ~np.isfinite(data).all(axis=1)


class CudaMemory(DeviceMemory):
    """CUDA OrtValues (ONNX Runtime's CUDA allocator, device 0): the primitives go through cobra-edge's CUDA library
    on the device's primary context, the one ONNX Runtime's CUDA provider uses."""

    device = "cuda"

    def __init__(self, device_id: int = 0):
        self.device_id = device_id
        self._flags: tuple[int, int] | None = None  # (device pointer, rows) of the check kernel's flags

    def _lib(self):
        from .kernels.cuda import call, cuda_library, host_library

        cuda_library(self.device_id)
        lib = host_library()
        call(lib.cobra_gpu_use_device, ctypes.c_int(self.device_id))  # this thread's current context
        return lib, call

    def copy(self, dst: int, src: int, nbytes: int) -> None:
        if nbytes:
            lib, call = self._lib()
            call(lib.cobra_gpu_copy, ctypes.c_uint64(dst), ctypes.c_uint64(src), ctypes.c_size_t(nbytes))

    def zero(self, ptr: int, nbytes: int) -> None:
        if nbytes:
            lib, call = self._lib()
            call(lib.cobra_gpu_zero, ctypes.c_uint64(ptr), ctypes.c_size_t(nbytes))

    def nonfinite(self, ptr: int, rows: int, row_len: int, dtype: np.dtype) -> np.ndarray:
        from .kernels.gpu_args import FiniteParams

        lib, call = self._lib()
        if self._flags is None or self._flags[1] < rows:
            if self._flags is not None:
                call(lib.cobra_gpu_free, ctypes.c_uint64(self._flags[0]))
            p = ctypes.c_uint64()
            call(lib.cobra_gpu_alloc, ctypes.c_size_t(4 * max(rows, 64)), ctypes.byref(p))
            self._flags = (p.value, max(rows, 64))
        call(lib.cobra_gpu_rows_nonfinite, ctypes.byref(FiniteParams(rows, row_len, dtype.itemsize, ptr,
                                                                     self._flags[0])), None)
        flags = np.empty(rows, np.int32)
        call(lib.cobra_gpu_copy, ctypes.c_uint64(flags.ctypes.data), ctypes.c_uint64(self._flags[0]),
             ctypes.c_size_t(flags.nbytes))
        return flags.astype(bool)


_MEMORY: dict[str, DeviceMemory] = {}


def memory_for(device: str) -> DeviceMemory:
    """The memory of a session's device ("cpu" or "cuda"): one object per device per process."""
    if device not in ("cpu", "cuda"):
        raise ValueError(f"memory_for: device 'cpu' or 'cuda', got {device!r}")
    if device not in _MEMORY:
        _MEMORY[device] = HostMemory() if device == "cpu" else CudaMemory()
    return _MEMORY[device]
