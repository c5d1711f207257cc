"""The GPU kernels' parameter structs (gpu_scan.h ``ScanParams``, gpu_conv.h ``ConvParams``, gpu_finite.h
``FiniteParams``) as ctypes structures, filled from shapes and addresses: host addresses for the host harness
(gpu_emu.py), device addresses for launches (bench/gpu_check.py, engines/memory.py).

Shapes (float32 or float16 activations T; state and weights float32):
    scan   x, dt, z [b, l, d] T; A [d, n]; B, C [b, l, n] T; D, dt_bias [d]; h0 [b, d, n] -> y [b, l, d] T, h_out
    conv   x [b, l, d] T; state [b, d, k - 1] T; weight [d, k]; bias [d] -> y [b, l, d] T, state_out [b, d, k - 1] T
"""

from __future__ import annotations

import ctypes

_I64 = ctypes.c_int64
_P = ctypes.c_void_p


class ScanParams(ctypes.Structure):
    _fields_ = ([(k, _I64) for k in ("b", "l", "d", "n")]
                + [(k, _P) for k in ("x", "dt", "B", "C", "z", "A", "D", "dt_bias", "h0", "y", "h_out")])


class ConvParams(ctypes.Structure):
    _fields_ = [(k, _I64) for k in ("b", "l", "d", "k")] + [(k, _P) for k in ("x", "state", "weight", "bias", "y",
                                                                              "state_out")]


class FiniteParams(ctypes.Structure):
    _fields_ = [(k, _I64) for k in ("rows", "row_len", "elem_size")] + [("data", _P), ("flags", _P)]


SCAN_PTRS = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "h0", "y", "h_out")
CONV_PTRS = ("x", "state", "weight", "bias", "y", "state_out")


def scan_params(b: int, l: int, d: int, n: int, ptrs: dict[str, int]) -> ScanParams:
    """ptrs: an address for each of SCAN_PTRS."""
    return ScanParams(b, l, d, n, *(ptrs[k] for k in ("x", "dt", "B", "C", "z", "A", "D", "dt_bias", "h0", "y",
                                                      "h_out")))


def conv_params(b: int, l: int, d: int, k: int, ptrs: dict[str, int]) -> ConvParams:
    """ptrs: an address for each of CONV_PTRS."""
    return ConvParams(b, l, d, k, *(ptrs[name] for name in CONV_PTRS))
