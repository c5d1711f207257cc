"""The fused training recurrence (engines/kernels/scan_grad.h through export/train_scan.py) against the reference
scan under autograd in float64: values and every gradient, on shapes that take each path of the kernel (full
64-channel groups, tail vectors, d_state other than 16, one token), in both instruction-set bodies; a whole
training step's gradients equal to the Python loop's; bad arrays named."""

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from engines import kernels  # noqa: E402
from tests.conftest import REPO, report  # noqa: E402

LIB = kernels.library()
needs_kernel = pytest.mark.skipif(LIB is None, reason="cobra-edge's kernel library is not built here "
                                                      "(pip install -e . with a C++ compiler)")
NAMES = ("x", "delta", "A", "B", "C", "h0")


def recurrence_inputs(b, l, d, n, seed, extreme=False):
    """float32 x, delta (after softplus: > 0), A (< 0), B, C, h0, and the output gradients gy, gh. extreme: a
    third of the channels with steps of ~40 (exp(delta A) underflows: the state resets), a third with ~1e-6."""
    rng = np.random.default_rng(seed)
    f = {"x": rng.standard_normal((b, l, d)), "delta": np.log1p(np.exp(rng.standard_normal((b, l, d)))),
         "A": -np.exp(rng.uniform(-1, 2, (d, n))), "B": rng.standard_normal((b, l, n)),
         "C": rng.standard_normal((b, l, n)), "h0": rng.standard_normal((b, d, n)),
         "gy": rng.standard_normal((b, l, d)), "gh": rng.standard_normal((b, d, n))}
    if extreme:
        f["delta"][..., : d // 3] = 40.0
        f["delta"][..., d // 3: 2 * d // 3] = 1e-6
    return {k: v.astype(np.float32) for k, v in f.items()}


def reference_grads(f, with_gh=True):
    """(y, h_out, gx, gdelta, gA, gB, gC, gh0) of export/scan.py's scan_ref in float64 under autograd."""
    from export.scan import scan_ref

    t = {k: torch.from_numpy(f[k]).double().requires_grad_() for k in NAMES}
    y, h = scan_ref(*(t[k] for k in NAMES))
    loss = (y * torch.from_numpy(f["gy"]).double()).sum()
    if with_gh:
        loss = loss + (h * torch.from_numpy(f["gh"]).double()).sum()
    grads = torch.autograd.grad(loss, [t[k] for k in NAMES])
    return tuple(v.detach().numpy() for v in (y, h, *grads))


def rel_errs(got, want):
    return [float(np.abs(g - w).max() / max(1.0, float(np.abs(w).max()))) for g, w in zip(got, want)]


@needs_kernel
@pytest.mark.parametrize("shape", [
    (2, 7, 192, 16),   # tiny-ldp-96's d_inner: three full groups of 64 channels
    (3, 33, 100, 16),  # a tail group whose last vector holds 4 channels
    (1, 9, 13, 5),     # d_state not 16, fewer channels than two vectors
    (2, 1, 64, 16),    # one token
    (1, 20, 72, 64),   # the largest d_state the kernel takes
])
@pytest.mark.parametrize("extreme", [False, True], ids=["typical", "extreme"])
def test_recurrence_and_its_gradients_match_the_reference(shape, extreme):
    from engines.kernels.recurrence import recurrence, recurrence_grad

    f = recurrence_inputs(*shape, seed=sum(shape), extreme=extreme)
    want = reference_grads(f)
    got = (*recurrence(LIB, *(f[k] for k in NAMES)), *recurrence_grad(LIB, *(f[k] for k in NAMES), f["gy"], f["gh"]))
    errs = dict(zip(("y", "h_out", "gx", "gdelta", "gA", "gB", "gC", "gh0"), rel_errs(got, want)))
    report(f"training recurrence vs float64 autograd {shape} {'extreme' if extreme else 'typical'}",
           max(errs.values()), 1e-5)
    assert all(np.isfinite(g).all() for g in got)
    assert max(errs.values()) < 1e-5, errs


@needs_kernel
def test_no_gradient_at_the_last_state_is_zero():
    from engines.kernels.recurrence import recurrence_grad

    f = recurrence_inputs(2, 11, 40, 16, seed=3)
    got = recurrence_grad(LIB, *(f[k] for k in NAMES), f["gy"], None)
    assert max(rel_errs(got, reference_grads(f, with_gh=False)[2:])) < 1e-5


@needs_kernel
def test_bad_arrays_are_named():
    from engines.kernels.recurrence import recurrence, recurrence_grad

    f = recurrence_inputs(2, 5, 16, 16, seed=0)
    args = [f[k] for k in NAMES]
    with pytest.raises(ValueError, match=r"'C' has shape \(2, 4, 16\), expected \(2, 5, 16\)"):
        recurrence(LIB, *args[:4], f["C"][:, :4].copy(), args[5])
    with pytest.raises(ValueError, match="'delta' must be C-contiguous float32, got float64"):
        recurrence(LIB, args[0], args[1].astype(np.float64), *args[2:])
    with pytest.raises(ValueError, match=r"'x' has shape \(5, 16\), expected \[b, l, d\]"):
        recurrence(LIB, args[0][0], *args[1:])
    with pytest.raises(ValueError, match="'gy' has shape"):
        recurrence_grad(LIB, *args, f["gy"][:1].copy(), None)
    with pytest.raises(ValueError, match="d_state 65 is outside 1..64"):
        recurrence(LIB, *[np.zeros(a.shape[:-1] + (65,), np.float32) if k in "A B C h0".split() else a
                          for k, a in zip(NAMES, args)])


@needs_kernel
def test_baseline_body_matches_the_reference():
    """The SSE2 body, forced on an AVX2 machine in a fresh process (the choice is made once per process)."""
    code = ("from tests.export.test_train_scan import *\n"
            "from engines.kernels.recurrence import recurrence, recurrence_grad\n"
            "lib = kernels.library(); assert lib.isa == 'baseline', lib.isa\n"
            "f = recurrence_inputs(3, 33, 100, 16, seed=5, extreme=True)\n"
            "got = (*recurrence(lib, *(f[k] for k in NAMES)), *recurrence_grad(lib, *(f[k] for k in NAMES), f['gy'], f['gh']))\n"
            "print(max(rel_errs(got, reference_grads(f))))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "COBRA_EDGE_KERNEL_ISA": "baseline"})
    assert out.returncode == 0, out.stderr
    err = float(out.stdout.split()[-1])
    report("training recurrence, baseline body, vs float64 autograd", err, 1e-5)
    assert err < 1e-5


@needs_kernel
def test_a_training_step_has_the_python_loops_gradients(monkeypatch):
    """The whole loss of one training step (still scenes from shared image states, motion items in continuous
    mode, the dense and early-answer terms): the fused recurrence and scan_train give the same loss and gradients."""
    from export.config import preset
    from export.model import build_random
    from export.tokenizer import build_tiny_tokenizer, prompt_tokenizer
    from export.train import init_for_training
    from export.train_data import DataRecipe, draw_batch
    from export.train_dense import DenseHead, dense_grid
    from export.train_loss import step_loss
    from export.train_scan import ENV, scan_fused, train_recurrence

    cfg = preset("tiny-ldp-96")
    model = init_for_training(build_random(cfg, seed=0)).train()
    tok = prompt_tokenizer(build_tiny_tokenizer(cfg.lm.vocab_size).to_str(), cfg)
    grid = dense_grid(model)
    batch = draw_batch(DataRecipe(scenes=3, questions=2, sequences=2, image_size=cfg.image_size, dense_grid=grid), 0, 7)
    dense = DenseHead(cfg.lm.d_model)
    params = [p for p in model.parameters()] + list(dense.parameters())
    out = {}
    for mode in ("torch", "fused"):
        monkeypatch.setenv(ENV, mode)
        assert (train_recurrence() is scan_fused) == (mode == "fused")
        loss, _ = step_loss(model, tok, batch, 2.0, dense, 1.0, 0.0, 1.0)
        out[mode] = (loss.detach(), torch.autograd.grad(loss, params, allow_unused=True))
    assert abs(float(out["fused"][0] - out["torch"][0])) < 1e-5 * max(1.0, abs(float(out["torch"][0])))
    worst = 0.0
    for g_f, g_t in zip(out["fused"][1], out["torch"][1]):
        assert (g_f is None) == (g_t is None)
        if g_t is not None:
            worst = max(worst, float((g_f - g_t).abs().max() / max(1e-3, float(g_t.abs().max()))))
    report("training step: fused recurrence vs Python loop, worst parameter gradient", worst, 1e-4)
    assert worst < 1e-4


def test_the_python_loop_is_used_where_asked(monkeypatch):
    from export.scan import scan_train
    from export.train_scan import ENV, train_recurrence

    monkeypatch.setenv(ENV, "torch")
    assert train_recurrence() is scan_train
