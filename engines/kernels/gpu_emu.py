"""The GPU kernels' per-thread code run on the CPU by the host harness (gpu_emu.cc): every block and thread of the
launch grid, shared memory emulated. What tests/engines/test_gpu_kernels.py compares with the float64 reference;
no GPU needed, only the CUDA library's host build (engines/kernels/cuda.py).

Activations (x, dt, z, B, C, y; the conv's x, state, y) are float32 or float16 arrays, as given; the SSM state, A,
D, dt_bias and the conv weight and bias are float32.
"""

from __future__ import annotations

import ctypes

import numpy as np

from .cuda import CudaUnavailable, host_library
from .gpu_args import FiniteParams, conv_params, scan_params

SCAN_INPUTS = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "h")
FLOAT32_INPUTS = ("A", "D", "dt_bias", "h")


def _activation_dtype(x: np.ndarray) -> np.dtype:
    if x.dtype not in (np.float32, np.float16):
        raise ValueError(f"activations must be float32 or float16, got {x.dtype}")
    return x.dtype


def selective_scan(x, dt, A, B, C, D, z, dt_bias, h):
    """x, dt, z [b, l, d]; A [d, n]; B, C [b, l, n]; D, dt_bias [d]; h [b, d, n] -> (y [b, l, d], h_out [b, d, n]):
    the scan kernel's code over its grid. Activations in x's dtype (float32 or float16)."""
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
    y, h_out = np.empty((b, l, d), t), np.empty((b, d, n), np.float32)
    ptrs = {k: a.ctypes.data for k, a in arrays.items()}
    p = scan_params(b, l, d, n, {**ptrs, "h0": ptrs["h"], "y": y.ctypes.data, "h_out": h_out.ctypes.data})
    if host_library().cobra_emu_selective_scan(ctypes.byref(p), int(t == np.float16)) != 0:
        raise ValueError(f"selective scan: d_state {n} is outside 1..64, which the GPU kernel handles")
    return y, h_out


def causal_conv(x, conv_state, weight, bias):
    """x [b, l, d]; conv_state [b, d, k - 1] (x's dtype); weight [d, k]; bias [d] -> (y [b, l, d], conv_state_out):
    the conv kernel's code over its grid (ConvStep is l = 1)."""
    t = _activation_dtype(np.asarray(x))
    x, conv_state = np.ascontiguousarray(x, t), np.ascontiguousarray(conv_state, t)
    weight, bias = np.ascontiguousarray(weight, np.float32), np.ascontiguousarray(bias, np.float32)
    b, l, d = x.shape
    k = weight.shape[1]
    if conv_state.shape != (b, d, k - 1) or weight.shape != (d, k) or bias.shape != (d,):
        raise ValueError(f"causal conv: shapes x {x.shape}, conv_state {conv_state.shape}, weight {weight.shape}, "
                         f"bias {bias.shape} do not agree")
    y, state_out = np.empty((b, l, d), t), np.empty((b, d, k - 1), t)
    p = conv_params(b, l, d, k, {"x": x.ctypes.data, "state": conv_state.ctypes.data, "weight": weight.ctypes.data,
                                 "bias": bias.ctypes.data, "y": y.ctypes.data, "state_out": state_out.ctypes.data})
    if host_library().cobra_emu_causal_conv(ctypes.byref(p), int(t == np.float16)) != 0:
        raise ValueError(f"causal conv: d_conv {k} is outside 1..9, which the GPU kernel handles")
    return y, state_out


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
