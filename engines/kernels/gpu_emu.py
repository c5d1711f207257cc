"""The GPU kernels' per-thread code run on the CPU by the host harness (gpu_emu.cc): every block and thread of the
launch grid, shared memory emulated. What tests/engines/test_gpu_kernels.py compares with the float64 reference;
no GPU needed, only the CUDA library's host build (engines/kernels/cuda.py).

Activations (x, dt, z, B, C, y; the conv's x, state, y) are float32 or float16 arrays, as given; the SSM state, A,
D, dt_bias and the conv weight and bias are float32.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .cuda import CudaUnavailable, host_library
from .gpu_args import FiniteParams, conv_params, scan_params

SCAN_INPUTS = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "h")
FLOAT32_INPUTS = ("A", "D", "dt_bias", "h")


@dataclass
class KernelCall:
    """One launch's buffers, checked and laid out as the kernel reads them: ``inputs`` and ``outputs`` (allocated,
    unwritten) by the parameter struct's field names (gpu_args.py), ``half`` the activations' type flag, ``params``
    the struct for those buffers' addresses (host addresses here; bench/gpu_check.py copies the same buffers to the
    GPU and passes device addresses)."""

    inputs: dict[str, np.ndarray]
    outputs: dict[str, np.ndarray]
    half: int
    params: Callable[[dict[str, int]], ctypes.Structure]

    def host_params(self) -> ctypes.Structure:
        return self.params({k: a.ctypes.data for k, a in (self.inputs | self.outputs).items()})


def _activation_dtype(x: np.ndarray) -> np.dtype:
    if x.dtype not in (np.float32, np.float16):
        raise ValueError(f"activations must be float32 or float16, got {x.dtype}")
    return x.dtype


def scan_call(x, dt, A, B, C, D, z, dt_bias, h) -> KernelCall:
    """The scan kernel's launch for x, dt, z [b, l, d]; A [d, n]; B, C [b, l, n]; D, dt_bias [d]; h [b, d, n]:
    outputs y [b, l, d], h_out [b, d, n]. Activations in x's dtype (float32 or float16)."""
    t = _activation_dtype(np.asarray(x))
    given = dict(zip(SCAN_INPUTS, (x, dt, A, B, C, D, z, dt_bias, h)))
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32 if k in FLOAT32_INPUTS else t) for k, v in given.items()}
    b, l, d = arrays["x"].shape
    n = arrays["A"].shape[1]
    want = {"x": (b, l, d), "dt": (b, l, d), "A": (d, n), "B": (b, l, n), "C": (b, l, n), "D": (d,), "z": (b, l, d),
            "dt_bias": (d,), "h": (b, d, n)}
    for k, a in arrays.items():
        if a.shape != want[k]:
            raise ValueError(f"selective scan: {k!r} has shape {a.shape}, expected {want[k]}")
    if not 1 <= n <= 64:
        raise ValueError(f"selective scan: d_state {n} is outside 1..64, which the GPU kernel handles")
    arrays["h0"] = arrays.pop("h")
    return KernelCall(arrays, {"y": np.empty((b, l, d), t), "h_out": np.empty((b, d, n), np.float32)},
                      int(t == np.float16), lambda ptrs: scan_params(b, l, d, n, ptrs))


def conv_call(x, conv_state, weight, bias) -> KernelCall:
    """The conv kernel's launch for x [b, l, d]; conv_state [b, d, k - 1] (x's dtype); weight [d, k]; bias [d]:
    outputs y [b, l, d], state_out [b, d, k - 1] (ConvStep is l = 1)."""
    t = _activation_dtype(np.asarray(x))
    x, conv_state = np.ascontiguousarray(x, t), np.ascontiguousarray(conv_state, t)
    weight, bias = np.ascontiguousarray(weight, np.float32), np.ascontiguousarray(bias, np.float32)
    b, l, d = x.shape
    k = weight.shape[1]
    if conv_state.shape != (b, d, k - 1) or weight.shape != (d, k) or bias.shape != (d,):
        raise ValueError(f"causal conv: shapes x {x.shape}, conv_state {conv_state.shape}, weight {weight.shape}, "
                         f"bias {bias.shape} do not agree")
    if not 1 <= k <= 9:
        raise ValueError(f"causal conv: d_conv {k} is outside 1..9, which the GPU kernel handles")
    return KernelCall({"x": x, "state": conv_state, "weight": weight, "bias": bias},
                      {"y": np.empty((b, l, d), t), "state_out": np.empty((b, d, k - 1), t)}, int(t == np.float16),
                      lambda ptrs: conv_params(b, l, d, k, ptrs))


def selective_scan(x, dt, A, B, C, D, z, dt_bias, h):
    """(y [b, l, d], h_out [b, d, n]): the scan kernel's code over its grid (shapes: ``scan_call``)."""
    call = scan_call(x, dt, A, B, C, D, z, dt_bias, h)
    if host_library().cobra_emu_selective_scan(ctypes.byref(call.host_params()), call.half) != 0:
        raise CudaUnavailable("selective scan: the harness refused the launch")
    return call.outputs["y"], call.outputs["h_out"]


def causal_conv(x, conv_state, weight, bias):
    """(y [b, l, d], conv_state_out [b, d, k - 1]): the conv kernel's code over its grid (shapes: ``conv_call``)."""
    call = conv_call(x, conv_state, weight, bias)
    if host_library().cobra_emu_causal_conv(ctypes.byref(call.host_params()), call.half) != 0:
        raise CudaUnavailable("causal conv: the harness refused the launch")
    return call.outputs["y"], call.outputs["state_out"]


def rows_nonfinite(data: np.ndarray) -> np.ndarray:
    """data [rows, ...] float32 or float16 -> bool [rows]: which rows hold NaN or infinity (the check kernel)."""
    data = np.ascontiguousarray(data)
    if data.dtype not in (np.float32, np.float16):
        raise ValueError(f"rows_nonfinite: float32 or float16, got {data.dtype}")
    flags = np.empty(data.shape[0], np.int32)
    p = FiniteParams(data.shape[0], data[0].size if data.shape[0] else 0, data.itemsize, data.ctypes.data,
                     flags.ctypes.data)
    if host_library().cobra_emu_rows_nonfinite(ctypes.byref(p)) != 0:
        raise CudaUnavailable("rows_nonfinite: the harness refused the element size")
    return flags.astype(bool)
