"""The fused selective-scan kernel (engines/kernels) against the PyTorch reference (export/scan.py's
selective_scan with the token loop, in float64), directly and as ONNX Runtime runs it, and the portable ONNX
body of the same node against the same reference."""

import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from engines import EngineError, load_engine  # noqa: E402
from engines import kernels  # noqa: E402
from tests.conftest import REPO, report  # noqa: E402

LIB = kernels.library()
needs_kernel = pytest.mark.skipif(LIB is None, reason="cobra-edge's kernel library is not built here "
                                                      "(pip install -e . with a C++ compiler)")


def scan_inputs(b, l, d, n, seed, extreme=False):
    """x, dt (before bias and softplus), A, B, C, D, z, dt_bias, h as a Mamba layer makes them (float32).
    extreme: some channels with a huge step (state reset: exp(dt A) underflows), some with a tiny one, and
    gates far into both tails of silu."""
    rng = np.random.default_rng(seed)
    f = {
        "x": rng.standard_normal((b, l, d)), "dt": rng.standard_normal((b, l, d)),
        "A": -np.exp(rng.uniform(0, 3, (d, n))), "B": rng.standard_normal((b, l, n)),
        "C": rng.standard_normal((b, l, n)), "D": rng.standard_normal(d), "z": rng.standard_normal((b, l, d)) * 2,
        "dt_bias": rng.uniform(np.log(np.expm1(1e-3)), np.log(np.expm1(0.1)), d), "h": rng.standard_normal((b, d, n)),
    }
    if extreme:
        f["dt_bias"][: d // 3] += 40  # delta ~ 40: exp(delta A) < e^-40
        f["dt_bias"][d // 3: 2 * d // 3] -= 30  # delta ~ e^-37
        f["z"][..., ::2] *= 40
    return {k: v.astype(np.float32) for k, v in f.items()}


def reference(f, dtype=torch.float64):
    from export.scan import selective_scan

    t = {k: torch.from_numpy(v).to(dtype) for k, v in f.items()}
    with torch.no_grad():
        y, h = selective_scan(*(t[k] for k in kernels.SCAN_INPUTS))
    return y.numpy(), h.numpy()


def max_rel_err(got, want):
    return max(float(np.abs(g - w).max() / max(1.0, float(np.abs(w).max()))) for g, w in zip(got, want))


@needs_kernel
@pytest.mark.parametrize("shape", [
    (1, 1, 8, 16),      # one token, one vector
    (2, 7, 64, 16),     # one full 64-channel task per row
    (3, 33, 100, 16),   # a tail task whose last vector holds 4 channels
    (2, 20, 1536, 16),  # mamba-130m's d_inner
    (1, 64, 130, 5),    # d_state not 16 (the runtime-n body), odd
    (1, 9, 72, 64),     # the largest d_state the kernel takes
    (1, 12, 3, 16),     # fewer channels than one vector
])
@pytest.mark.parametrize("extreme", [False, True], ids=["typical", "extreme"])
def test_kernel_matches_the_reference(shape, extreme):
    f = scan_inputs(*shape, seed=sum(shape), extreme=extreme)
    want = reference(f)
    got = kernels.selective_scan(LIB, *(f[k] for k in kernels.SCAN_INPUTS))
    err = max_rel_err(got, want)
    fp32 = max_rel_err(reference(f, torch.float32), want)  # how far float32 itself is from float64 here
    report(f"kernel vs float64 reference {shape} {'extreme' if extreme else 'typical'} (torch fp32: {fp32:.1e})",
           err, 2e-6)
    assert all(np.isfinite(g).all() for g in got)
    assert err < 2e-6


@needs_kernel
def test_zero_tokens_pass_the_state_through():
    f = scan_inputs(2, 0, 100, 16, seed=0)
    y, h = kernels.selective_scan(LIB, *(f[k] for k in kernels.SCAN_INPUTS))
    assert y.shape == (2, 0, 100) and np.array_equal(h, f["h"])


@needs_kernel
def test_baseline_body_matches_the_reference(tmp_path):
    """The build's second bodies (SSE2 baseline on x86-64), forced where the CPU has AVX2, in a fresh process: the
    scan called directly, and every op as a one-node graph in ONNX Runtime."""
    code = (
        "import sys; from pathlib import Path; from engines import kernels, load_engine\n"
        "from tests.engines.test_kernels import *; from tests.engines.test_kernels import _one_node_graph\n"
        "lib = kernels.library(); assert lib.isa == 'baseline', lib.isa\n"
        "f = scan_inputs(2, 40, 100, 16, seed=1, extreme=True)\n"
        "errs = [max_rel_err(kernels.selective_scan(lib, *(f[k] for k in kernels.SCAN_INPUTS)), reference(f))]\n"
        "for op in kernels.OPS:\n"
        "    engine = load_engine('onnxruntime', _one_node_graph(Path(sys.argv[1]) / f'{op}.onnx', op), threads=2)\n"
        "    f, want = op_inputs(op, 3, 37, 100, 16, 4, seed=2, extreme=True)\n"
        "    out = engine.run(f)\n"
        "    errs.append(max_rel_err(tuple(out[o] for o in out), want))\n"
        "print(max(errs))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "COBRA_EDGE_KERNEL_ISA": "baseline"})
    assert out.returncode == 0, out.stderr
    err = float(out.stdout.split()[-1])
    report("baseline bodies (scan, and each op in ONNX Runtime) vs float64 reference", err, 2e-6)
    assert err < 2e-6


def _cross_tools():
    import shutil

    return shutil.which("aarch64-linux-gnu-g++"), shutil.which("qemu-aarch64")


@pytest.mark.skipif(not all(_cross_tools()), reason="needs aarch64-linux-gnu-g++ and qemu-aarch64 (Debian: "
                                                    "g++-aarch64-linux-gnu qemu-user) to build and run the Jetson body")
def test_aarch64_build_matches_the_reference(tmp_path):
    """The kernel as a Jetson (aarch64, NEON) compiler builds it, run under an emulator, against the reference."""
    cxx, qemu = _cross_tools()
    src = REPO / "engines" / "kernels"
    driver = tmp_path / "scan_driver"
    subprocess.run([cxx, "-std=c++17", "-O3", "-static", "-fno-exceptions", "-fno-rtti", "-Wno-psabi", f"-I{src}",
                    "-x", "c++", str(REPO / "tests" / "engines" / "scan_driver.c"), str(src / "selective_scan.cc"),
                    "-o", str(driver)], check=True, capture_output=True)
    f = scan_inputs(2, 30, 100, 16, seed=7, extreme=True)
    b, l, d = f["x"].shape
    n = f["A"].shape[1]
    (tmp_path / "in.bin").write_bytes(np.array([b, l, d, n], np.int64).tobytes()
                                      + b"".join(f[k].tobytes() for k in kernels.SCAN_INPUTS))
    run = subprocess.run([qemu, str(driver), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "baseline"  # NEON is aarch64's baseline: one body
    out = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.float32)
    got = (out[: b * l * d].reshape(b, l, d), out[b * l * d:].reshape(b, d, n))
    err = max_rel_err(got, reference(f))
    report("aarch64 build (qemu) vs float64 reference", err, 2e-6)
    assert err < 2e-6


def _one_node_graph(path, op="SelectiveScan", d=100, n=16, k=4):
    """A graph of one cobra_edge node carrying the exported portable body as its function (export/fused.py)."""
    from onnx import helper

    from export.fused import OPS, portable_function

    spec = OPS[op]
    fn = onnx.FunctionProto()
    fn.ParseFromString(portable_function(op, d, n, k))
    shapes = spec.shapes(d, n, k)
    outputs = {"y": shapes["x"], "h_out": shapes.get("h"), "conv_state_out": shapes.get("conv_state")}
    graph = helper.make_graph(
        [helper.make_node(op, list(spec.inputs), list(spec.outputs), domain="cobra_edge", name=f"layers.3.{op}")],
        op, [helper.make_tensor_value_info(i, onnx.TensorProto.FLOAT, shapes[i]) for i in spec.inputs],
        [helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, outputs[o]) for o in spec.outputs])
    model = helper.make_model(graph, opset_imports=[*fn.opset_import, helper.make_opsetid("cobra_edge", 1)],
                              functions=[fn], ir_version=10)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def op_inputs(op, b, l, d, n, k, seed, extreme=False):
    """Inputs of one op, and its float64 reference outputs (export/scan.py, export/mamba.py)."""
    from export.mamba import causal_conv, causal_conv_step
    from export.scan import selective_step

    if op in ("ConvStep", "CausalConv"):
        rng = np.random.default_rng(seed)
        x_shape = (b, d) if op == "ConvStep" else (b, l, d)
        f = {"x": rng.standard_normal(x_shape), "conv_state": rng.standard_normal((b, d, k - 1)),
             "weight": rng.standard_normal((d, k)) * 0.5, "bias": rng.standard_normal(d) * (10 if extreme else 1)}
        f = {key: v.astype(np.float32) for key, v in f.items()}
        t = [torch.from_numpy(f[i]).double() for i in ("x", "conv_state", "weight", "bias")]
        want = (causal_conv_step if op == "ConvStep" else causal_conv)(*t)
    else:
        f = scan_inputs(b, l if op == "SelectiveScan" else 1, d, n, seed, extreme)
        if op == "SelectiveScan":
            return f, reference(f)
        f = {key: v[:, 0] if key in ("x", "dt", "B", "C", "z") else v for key, v in f.items()}
        t = {key: torch.from_numpy(v).double() for key, v in f.items()}
        want = selective_step(*(t[i] for i in kernels.SCAN_INPUTS))
    return f, tuple(w.numpy() for w in want)


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ops")
    return {op: _one_node_graph(tmp / f"{op}.onnx", op) for op in kernels.OPS}


@pytest.fixture(scope="module")
def scan_graph(graphs):
    return graphs["SelectiveScan"]


@pytest.mark.parametrize("op", kernels.OPS)
@pytest.mark.parametrize("kernels_on", [pytest.param(True, marks=needs_kernel, id="kernel"),
                                        pytest.param(False, id="portable")])
@pytest.mark.parametrize("threads", [1, 2])
def test_node_in_onnxruntime_matches_the_reference(graphs, op, kernels_on, threads):
    """Each op as ONNX Runtime runs it, fused (kernel library registered) and as its portable function body."""
    engine = load_engine("onnxruntime", graphs[op], threads=threads, kernels=kernels_on)
    assert (engine.kernels is not None) == kernels_on
    for b, l in ((1, 1), (3, 37), (2, 200)):
        f, want = op_inputs(op, b, l, 100, 16, 4, seed=l, extreme=True)
        out = engine.run(f)
        err = max_rel_err(tuple(out[o] for o in out), want)
        report(f"{op} {'kernel' if kernels_on else 'portable body'} in ONNX Runtime, {threads} threads, b={b} l={l}",
               err, 2e-6)
        assert err < 2e-6


@needs_kernel
def test_threads_split_work_without_changing_it(scan_graph):
    """Tasks write disjoint channels: 1 and 2 threads give the same bits."""
    f = scan_inputs(3, 50, 100, 16, seed=5)
    one = load_engine("onnxruntime", scan_graph, threads=1).run(f)
    two = load_engine("onnxruntime", scan_graph, threads=2).run(f)
    assert all(np.array_equal(one[k], two[k]) for k in ("y", "h_out"))


@needs_kernel
def test_bad_shapes_are_named(scan_graph):
    """The engine refuses feeds that contradict the graph's declared dims; the kernel itself checks every input
    against x and A and names the node, the input and both shapes (graphs whose shapes are not declared, or
    feeds that reach it through ONNX Runtime directly)."""
    engine = load_engine("onnxruntime", scan_graph, threads=1)
    f = scan_inputs(2, 9, 100, 16, seed=0)
    f["B"] = f["B"][:, :4]
    with pytest.raises(EngineError, match="input 'B': l = 4 here but 9 in 'x'"):
        engine.run(f)
    with pytest.raises(Exception, match=r"SelectiveScan \(node 'layers\.3\.SelectiveScan'\): input 'B' has shape "
                                        r"\[2, 4, 16\], expected \[b, l, n\] = \[2, 9, 16\]"):
        engine.session.run(None, f)


@needs_kernel
def test_step_ops_name_bad_shapes(graphs):
    f, _ = op_inputs("SelectiveStep", 2, 1, 100, 16, 4, seed=0)
    f["C"] = f["C"][:1]
    with pytest.raises(Exception, match=r"SelectiveStep \(node 'layers\.3\.SelectiveStep'\): input 'C' has shape "
                                        r"\[1, 16\], expected \[b, n\] = \[2, 16\]"):
        load_engine("onnxruntime", graphs["SelectiveStep"], threads=1).session.run(None, f)
    for op in ("ConvStep", "CausalConv"):
        f, _ = op_inputs(op, 2, 5, 100, 16, 4, seed=0)
        f["conv_state"] = f["conv_state"][:1]
        with pytest.raises(Exception, match=rf"{op} \(node 'layers\.3\.{op}'\): input 'conv_state' has shape "
                                            r"\[1, 100, 3\], expected \[b, d, k - 1\] = \[2, 100, 3\]"):
            load_engine("onnxruntime", graphs[op], threads=1).session.run(None, f)


@needs_kernel
@pytest.mark.parametrize("l", [1, 2, 3, 4, 19])
def test_causal_conv_equals_the_step_conv_token_by_token(graphs, l):
    """CausalConv over l tokens (fewer than the window, as many, more) equals ConvStep applied l times: what lets the
    runtime decode with the prefill graph."""
    f, _ = op_inputs("CausalConv", 2, l, 100, 16, 4, seed=l)
    whole = load_engine("onnxruntime", graphs["CausalConv"], threads=2).run(f)
    step = load_engine("onnxruntime", graphs["ConvStep"], threads=2)
    state = f["conv_state"]
    for t in range(l):
        out = step.run({"x": np.ascontiguousarray(f["x"][:, t]), "conv_state": state, "weight": f["weight"],
                        "bias": f["bias"]})
        np.testing.assert_allclose(whole["y"][:, t], out["y"], rtol=1e-6, atol=1e-6)
        state = out["conv_state_out"]
    np.testing.assert_array_equal(whole["conv_state_out"], state)


@needs_kernel
def test_state_size_outside_the_kernel_is_refused(tmp_path):
    engine = load_engine("onnxruntime", _one_node_graph(tmp_path / "big.onnx", d=16, n=65), threads=1)
    with pytest.raises(EngineError, match="d_state 65 is outside 1..64"):
        engine.run(scan_inputs(1, 3, 16, 65, seed=0))
    with pytest.raises(ValueError, match="d_state 65"):
        kernels.selective_scan(LIB, *(scan_inputs(1, 3, 16, 65, seed=0)[k] for k in kernels.SCAN_INPUTS))


def test_kernels_can_be_turned_off_and_a_bad_path_is_an_error(scan_graph, monkeypatch, tmp_path):
    monkeypatch.setenv(kernels.ENV, "off")
    assert kernels.library() is None and "COBRA_EDGE_KERNELS=off" in kernels.status()
    assert load_engine("onnxruntime", scan_graph).kernels is None
    monkeypatch.setenv(kernels.ENV, str(tmp_path / "missing.so"))
    with pytest.raises(EngineError, match="missing.so: no such file"):
        load_engine("onnxruntime", scan_graph)
    not_a_library = tmp_path / "junk.so"
    not_a_library.write_bytes(b"not an ELF file")
    monkeypatch.setenv(kernels.ENV, str(not_a_library))
    with pytest.raises(kernels.KernelUnavailable, match="not a cobra-edge kernel library"):
        kernels.library()


@needs_kernel
def test_status_names_the_instruction_set():
    assert LIB.isa in ("avx2+fma", "baseline")
    assert LIB.isa in kernels.status() and "fused kernels" in kernels.status()


def test_runtime_knows_every_op_the_export_writes():
    """The runtime's list of kernel ops (torch-free, engines/kernels) is the export's list (export/fused.py)."""
    from export.fused import OPS

    assert set(kernels.OPS) == set(OPS)
