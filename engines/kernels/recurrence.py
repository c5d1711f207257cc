"""The selective scan's recurrence, forward and backward, on numpy arrays through the kernel library
(engines/kernels/scan_grad.h): what export/train_scan.py's autograd function calls while training. Runs on the
calling thread.

    y, h_out = recurrence(lib, x, delta, A, B, C, h0)
    gx, gdelta, gA, gB, gC, gh0 = recurrence_grad(lib, x, delta, A, B, C, h0, gy, gh)

Shapes (float32, C-contiguous; delta is the step after its bias and softplus): x, delta [b, l, d]; A [d, n];
B, C [b, l, n]; h0 [b, d, n]; gy like y [b, l, d]; gh like h_out [b, d, n] or None (zero).
"""

from __future__ import annotations

import ctypes

import numpy as np

from . import KernelLibrary, _cdll

INPUTS = ("x", "delta", "A", "B", "C", "h0")


class _GradArgs(ctypes.Structure):  # CobraScanGradArgs of scan_grad.h
    _fields_ = ([(k, ctypes.c_int64) for k in ("b", "l", "d", "n")]
                + [(k, ctypes.c_void_p) for k in ("x", "delta", "A", "B", "C", "h0", "gy", "gh", "y", "h_out",
                                                  "gx", "gdelta", "gA", "gB", "gC", "gh0")])


def _checked(arrays: dict[str, np.ndarray]) -> tuple[int, int, int, int]:
    """-> (b, l, d, n), or a ValueError naming the array whose shape or dtype is not the contract's."""
    if arrays["x"].ndim != 3 or arrays["A"].ndim != 2:
        bad = "x" if arrays["x"].ndim != 3 else "A"
        raise ValueError(f"scan recurrence: {bad!r} has shape {arrays[bad].shape}, expected "
                         + ("[b, l, d]" if bad == "x" else "[d, n]"))
    b, l, d = arrays["x"].shape
    n = arrays["A"].shape[-1]
    want = {"x": (b, l, d), "delta": (b, l, d), "A": (d, n), "B": (b, l, n), "C": (b, l, n), "h0": (b, d, n),
            "gy": (b, l, d), "gh": (b, d, n)}
    for name, a in arrays.items():
        if a.shape != want[name]:
            raise ValueError(f"scan recurrence: {name!r} has shape {a.shape}, expected {want[name]}")
        if a.dtype != np.float32 or not a.flags.c_contiguous:
            raise ValueError(f"scan recurrence: {name!r} must be C-contiguous float32, got {a.dtype}"
                             + ("" if a.flags.c_contiguous else " (not contiguous)"))
    if not 1 <= n <= 64:
        raise ValueError(f"scan recurrence: d_state {n} is outside 1..64, which the kernel handles")
    return b, l, d, n


def _ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


def recurrence(lib: KernelLibrary, x, delta, A, B, C, h0) -> tuple[np.ndarray, np.ndarray]:
    """-> (y [b, l, d], h_out [b, d, n]): h_t = exp(delta_t A) h_{t-1} + delta_t x_t B_t, y_t = C_t . h_t."""
    arrays = dict(zip(INPUTS, (x, delta, A, B, C, h0)))
    b, l, d, n = _checked(arrays)
    y, h_out = np.empty((b, l, d), np.float32), np.empty((b, d, n), np.float32)
    args = _GradArgs(b, l, d, n, *[_ptr(arrays[k]) for k in INPUTS], None, None, _ptr(y), _ptr(h_out),
                     *[None] * 6)
    if l == 0:
        return y, h0.copy()
    if _cdll(str(lib.path)).cobra_scan_recurrence(ctypes.byref(args)) != 0:
        raise RuntimeError("scan recurrence: the kernel refused its arguments")
    return y, h_out


def recurrence_grad(lib: KernelLibrary, x, delta, A, B, C, h0, gy, gh=None) -> tuple[np.ndarray, ...]:
    """-> the gradients (gx, gdelta [b, l, d]; gA [d, n]; gB, gC [b, l, n]; gh0 [b, d, n]) of a loss whose
    gradients at y and h_out are gy and gh (None: h_out is not used)."""
    arrays = dict(zip(INPUTS, (x, delta, A, B, C, h0)), gy=gy, **({"gh": gh} if gh is not None else {}))
    b, l, d, n = _checked(arrays)
    if l == 0:
        zeros = np.zeros((b, 0, d), np.float32)
        return (zeros, zeros.copy(), np.zeros((d, n), np.float32), np.zeros((b, 0, n), np.float32),
                np.zeros((b, 0, n), np.float32), np.zeros_like(h0) if gh is None else gh.copy())
    gx, gdelta = np.empty((b, l, d), np.float32), np.empty((b, l, d), np.float32)
    gA, gB, gC = np.zeros((d, n), np.float32), np.empty((b, l, n), np.float32), np.empty((b, l, n), np.float32)
    gh0 = np.empty((b, d, n), np.float32)
    args = _GradArgs(b, l, d, n, *[_ptr(arrays[k]) for k in INPUTS], _ptr(gy), _ptr(gh), None, None,
                     *[_ptr(a) for a in (gx, gdelta, gA, gB, gC, gh0)])
    rc = _cdll(str(lib.path)).cobra_scan_recurrence_grad(ctypes.byref(args))
    if rc != 0:
        raise (MemoryError if rc == -2 else RuntimeError)(f"scan recurrence backward: the kernel returned {rc}")
    return gx, gdelta, gA, gB, gC, gh0
