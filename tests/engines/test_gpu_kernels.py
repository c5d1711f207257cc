"""The GPU kernels' per-thread code, run by the host harness over the real launch grid (engines/kernels/gpu_emu.cc:
every block and thread index, shared memory emulated and poisoned between phases), against the float64 PyTorch
reference (export/scan.py, export/mamba.py), on the shapes the CPU kernels are tested with and the issue's: d not a
multiple of the block, d_state 5/16/64, L 1/7/64/761, float16 activations, huge and tiny steps. No GPU here: this
proves the code the GPU runs, not the GPU (bench/gpu_check.py does that)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engines.kernels import cuda  # noqa: E402
from tests.conftest import report  # noqa: E402
from tests.engines.test_kernels import max_rel_err, op_inputs, reference, scan_inputs  # noqa: E402

HOST = cuda.host_built()
pytestmark = pytest.mark.skipif(not HOST, reason="cobra-edge's CUDA library is not built here (pip install -e . with a "
                                                 "C++ compiler)")
if HOST:
    from engines.kernels import gpu_emu

# float32: the harness runs the kernel's float32 arithmetic with libm's expf/log1pf (CUDA's are within 2 ulp of them);
# float16: inputs and y are rounded to float16 (the reference sees the same rounded inputs), state and math float32
TOL = {np.float32: 1e-5, np.float16: 1e-2}
DTYPES = [pytest.param(np.float32, id="fp32"), pytest.param(np.float16, id="fp16")]
ACTIVATIONS = ("x", "dt", "B", "C", "z")


def as_dtype(f, dtype):
    """Activations rounded to dtype (what the kernel reads), the rest float32."""
    return {k: v.astype(dtype) if k in ACTIVATIONS else v for k, v in f.items()}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [
    (1, 1, 8, 16),      # one token (the decode step), one thread's worth of a block
    (2, 7, 64, 16),     # one full block of 64 channels per row
    (3, 33, 100, 16),   # d not a multiple of the block: the last block has 36 spare threads
    (2, 64, 1536, 16),  # mamba-130m's d_inner, four chunks of 16 tokens
    (1, 64, 130, 5),    # d_state 5 (register bound 8)
    (1, 9, 72, 64),     # the largest d_state (bound 64)
    (1, 12, 3, 16),     # fewer channels than a warp
    (2, 761, 100, 16),  # Cobra's prefill length: 47 full chunks and a partial one
])
@pytest.mark.parametrize("extreme", [False, True], ids=["typical", "extreme"])
def test_scan_kernel_matches_the_reference(shape, extreme, dtype):
    f = scan_inputs(*shape, seed=sum(shape), extreme=extreme)
    if dtype == np.float16 and extreme:  # gates x10 instead of x40: y must stay within float16's range (65504)
        f["z"] = f["z"] / 4
    f = as_dtype(f, dtype)
    want = reference({k: v.astype(np.float32) for k, v in f.items()})
    y, h = gpu_emu.selective_scan(*(f[k] for k in gpu_emu.SCAN_INPUTS))
    assert y.dtype == dtype and h.dtype == np.float32
    err = max_rel_err((y.astype(np.float32), h), want)
    report(f"GPU scan (host harness) {np.dtype(dtype).name} {shape} {'extreme' if extreme else 'typical'}", err,
           TOL[dtype])
    assert np.isfinite(y).all() and np.isfinite(h).all()
    assert err < TOL[dtype]


def test_zero_tokens_pass_the_state_through():
    f = scan_inputs(2, 0, 100, 16, seed=0)
    y, h = gpu_emu.selective_scan(*(f[k] for k in gpu_emu.SCAN_INPUTS))
    assert y.shape == (2, 0, 100) and np.array_equal(h, f["h"])


def test_scan_refuses_a_state_size_outside_the_kernel():
    f = scan_inputs(1, 3, 16, 65, seed=0)
    with pytest.raises(ValueError, match="d_state 65 is outside 1..64"):
        gpu_emu.selective_scan(*(f[k] for k in gpu_emu.SCAN_INPUTS))


def rel_err(got, want):
    """max_rel_err over the arrays that hold anything (d_conv 1 keeps no state; l = 0 has no outputs)"""
    pairs = [(g, w) for g, w in zip(got, want) if np.asarray(w).size]
    return max_rel_err(*zip(*pairs)) if pairs else 0.0


def conv_inputs(b, l, d, k, seed, dtype):
    rng = np.random.default_rng(seed)
    f = {"x": rng.standard_normal((b, l, d)).astype(dtype), "conv_state": rng.standard_normal((b, d, k - 1)).astype(dtype),
         "weight": (rng.standard_normal((d, k)) * 0.5).astype(np.float32),
         "bias": rng.standard_normal(d).astype(np.float32)}
    from export.mamba import causal_conv

    if l == 0:  # no tokens: the state passes through (torch's conv1d refuses an input shorter than its kernel)
        return f, (np.zeros((b, 0, d)), f["conv_state"].astype(np.float64))
    want = causal_conv(*(torch.from_numpy(f[i].astype(np.float64)) for i in ("x", "conv_state", "weight", "bias")))
    return f, tuple(w.numpy() for w in want)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("l", [0, 1, 2, 3, 4, 7, 19, 64, 761])
@pytest.mark.parametrize("d, k", [(100, 4), (3, 4), (130, 3), (72, 2), (64, 1), (40, 9)])
def test_conv_kernel_matches_the_reference(l, d, k, dtype):
    """CausalConv over l tokens (fewer than the window, as many, more; chunks of 8 tokens per thread), and ConvStep
    (l = 1); d_conv 4 (the compile-time window) and others (1 to 9)."""
    f, want = conv_inputs(2, l, d, k, seed=l + d + k, dtype=dtype)
    y, state = gpu_emu.causal_conv(f["x"], f["conv_state"], f["weight"], f["bias"])
    assert y.dtype == dtype and state.dtype == dtype
    err = rel_err((y.astype(np.float32), state.astype(np.float32)), want)
    report(f"GPU conv (host harness) {np.dtype(dtype).name} l={l} d={d} k={k}", err, TOL[dtype])
    assert err < TOL[dtype]
    if l >= k - 1:  # the state after the chunk is the chunk's last inputs, bit for bit
        assert np.array_equal(state, f["x"][:, l - (k - 1):].transpose(0, 2, 1))


def test_conv_step_equals_the_step_reference():
    """ConvStep on the GPU is the conv kernel at l = 1 (x [b, d] is [b, 1, d] in memory): the step's reference."""
    from export.mamba import causal_conv_step

    f, _ = conv_inputs(3, 1, 100, 4, seed=5, dtype=np.float32)
    y, state = gpu_emu.causal_conv(f["x"], f["conv_state"], f["weight"], f["bias"])
    args = (f["x"][:, 0], f["conv_state"], f["weight"], f["bias"])
    want = causal_conv_step(*(torch.from_numpy(a.astype(np.float64)) for a in args))
    err = max_rel_err((y[:, 0], state), tuple(w.numpy() for w in want))
    assert err < TOL[np.float32]


@pytest.mark.parametrize("b, l", [(1, 1), (3, 37), (2, 200)])
def test_causal_conv_on_the_cpu_kernels_shapes(b, l):
    """cobra_edge.CausalConv as the CUDA provider runs it (ort_cuda.cc: the conv kernel over x [b, l, d]) on the inputs
    and shapes the CPU kernel is tested with in ONNX Runtime (test_kernels.py: d 100, d_conv 4, a bias x10)."""
    f, want = op_inputs("CausalConv", b, l, 100, 16, 4, seed=l, extreme=True)
    got = gpu_emu.causal_conv(f["x"], f["conv_state"], f["weight"], f["bias"])
    err = max_rel_err(got, want)
    report(f"GPU CausalConv (host harness) b={b} l={l}", err, TOL[np.float32])
    assert err < TOL[np.float32]


@pytest.mark.parametrize("l", [1, 2, 3, 4, 19])
def test_causal_conv_equals_the_step_conv_token_by_token(l):
    """The GPU CausalConv over l tokens equals the GPU ConvStep (the same kernel at l = 1) applied l times, state carried:
    what decoding through the prefill graph at L = 1 relies on (test_kernels.py checks the CPU kernels the same way)."""
    f, _ = op_inputs("CausalConv", 2, l, 100, 16, 4, seed=l)
    y, state_out = gpu_emu.causal_conv(f["x"], f["conv_state"], f["weight"], f["bias"])
    state = f["conv_state"]
    for t in range(l):
        step_y, state = gpu_emu.causal_conv(f["x"][:, t:t + 1], state, f["weight"], f["bias"])
        np.testing.assert_allclose(y[:, t], step_y[:, 0], rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(state_out, state)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nonfinite_rows_are_found(dtype):
    """The state check: one flag per row, whichever element (first, last, one of a later block) holds NaN or inf."""
    data = np.random.default_rng(0).standard_normal((6, 3, 1000)).astype(dtype)
    data[1, 0, 0] = np.nan
    data[3, 2, 999] = np.inf
    data[4, 1, 500] = -np.inf
    assert gpu_emu.rows_nonfinite(data).tolist() == [False, True, False, True, True, False]
    assert not gpu_emu.rows_nonfinite(np.full((2, 5), 65504, dtype)).any()  # the largest float16 is finite
