"""bench/gpu_check.py on a machine without a GPU: its reference against the PyTorch one, its kernel checks on the host
harness (and that they catch a wrong kernel), the skip path with its exit code and summary line, the JSON, the build
step's report, the ONNX Runtime comparison (CPU against CPU here), and its options. What needs a GPU (the launches,
the timings, the CUDA provider) runs only there: ``python -m bench.gpu_check``."""

import json

import numpy as np
import pytest

from bench import gpu_check
from engines.kernels import cuda

needs_host = pytest.mark.skipif(not cuda.host_built(), reason="cobra-edge's CUDA library is not built here (its "
                                                               "host harness runs the kernels' code on the CPU)")


@pytest.fixture
def no_gpu(monkeypatch):
    """As on a machine without a driver, whether or not this one has a GPU."""
    def unavailable(self):
        raise cuda.CudaUnavailable("cobra_gpu_init: the CUDA driver (libcuda.so.1) is not installed (test)")

    monkeypatch.setattr(gpu_check.Gpu, "__init__", unavailable)


def test_the_numpy_reference_is_the_pytorch_reference():
    """gpu_check's float64 references (numpy, so the GPU machine needs no torch) equal export/scan.py's and
    export/mamba.py's."""
    torch = pytest.importorskip("torch")
    from export.mamba import causal_conv
    from export.scan import selective_scan

    f = gpu_check.scan_inputs(2, 19, 40, 5, seed=1)
    args = [f[k] for k in ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "h")]
    with torch.no_grad():
        want = selective_scan(*(torch.from_numpy(a).double() for a in args))
    assert gpu_check.rel_err(gpu_check.scan_reference(*args), [w.numpy() for w in want]) < 1e-12
    for k in (1, 2, 4):
        f = gpu_check.conv_inputs(2, 7, 30, k, seed=k)
        args = [f[key] for key in ("x", "conv_state", "weight", "bias")]
        want = causal_conv(*(torch.from_numpy(a).double() for a in args))
        assert gpu_check.rel_err(gpu_check.conv_reference(*args), [w.numpy() for w in want]) < 1e-12


@pytest.fixture
def few_shapes(monkeypatch):
    monkeypatch.setattr(gpu_check, "SCAN_SHAPES", [(1, 1, 8, 16), (3, 33, 100, 16), (1, 9, 72, 64)])
    monkeypatch.setattr(gpu_check, "CONV_SHAPES", [(2, 0, 100, 4), (1, 1, 100, 4), (3, 37, 100, 4), (2, 19, 40, 9)])


@needs_host
def test_kernel_checks_pass_on_the_harness_and_catch_a_wrong_kernel(few_shapes):
    from engines.kernels import gpu_emu

    rows = gpu_check.check_kernels(gpu_emu, big_scan=False)
    assert len(rows) == 2 * 7 and all(r["ok"] for r in rows), [r for r in rows if not r["ok"]]
    assert {r["op"] for r in rows} == {"SelectiveStep", "SelectiveScan", "ConvStep", "CausalConv"}

    class OffByALittle:  # the scan kernel right, the conv kernel's y off by 5 % of its scale
        selective_scan = staticmethod(gpu_emu.selective_scan)

        @staticmethod
        def causal_conv(*args):
            y, state = gpu_emu.causal_conv(*args)
            y32 = y.astype(np.float32)
            return (y32 + 0.05 * max(1.0, float(np.abs(y32).max(initial=0)))).astype(y.dtype), state

    rows = gpu_check.check_kernels(OffByALittle, big_scan=False)
    assert all(r["ok"] == (r["kernel"] == "scan" or r["shape"][1] == 0) for r in rows)


def test_without_a_gpu_it_says_what_it_skipped_and_exits_4(no_gpu, tmp_path, capsys):
    assert gpu_check.main(["--no-build", "--out", str(tmp_path)]) == gpu_check.EXIT_NO_GPU == 4
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("gpu-check: NO GPU;")
    assert ("no GPU: skipped kernels on the GPU, timings, onnxruntime on the GPU (cobra_gpu_init: the CUDA driver"
            in line)
    (path,) = tmp_path.glob("gpu-check-*.json")
    assert str(path) in line
    doc = json.loads(path.read_text())
    assert doc["schema"] == gpu_check.SCHEMA and doc["exit_code"] == 4 and doc["failed"] == []
    assert [s["what"] for s in doc["skipped"]] == ["build", "kernels on the GPU", "timings", "onnxruntime on the GPU"]
    assert "kernels" not in doc and "timings" not in doc and "CUDA" in doc["no_gpu"]


@needs_host
def test_emulate_runs_the_kernel_checks_without_a_gpu(no_gpu, few_shapes, tmp_path, capsys):
    assert gpu_check.main(["--no-build", "--emulate", "--out", str(tmp_path)]) == gpu_check.EXIT_NO_GPU
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "kernels 14/14 within tolerance (host harness (--emulate))" in line and "skipped timings" in line
    doc = json.loads(next(tmp_path.glob("gpu-check-*.json")).read_text())
    assert doc["kernels_on"].startswith("host harness") and len(doc["kernels"]) == 14


def test_a_failing_build_fails_the_check(no_gpu, monkeypatch, tmp_path, capsys):
    (tmp_path / "setup.py").write_text("import sys\nprint('compiling ...')\nsys.exit('error: no C++ compiler')\n")
    monkeypatch.setattr(gpu_check, "REPO", tmp_path)
    assert gpu_check.main(["--out", str(tmp_path / "out")]) == gpu_check.EXIT_FAILED
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("gpu-check: FAIL;") and "failed: build" in line
    doc = json.loads(next((tmp_path / "out").glob("gpu-check-*.json")).read_text())
    assert doc["build"]["ok"] is False and "no C++ compiler" in doc["build"]["log_tail"]


def test_out_of_budget_steps_are_skipped_not_run(monkeypatch, tmp_path, capsys):
    """--budget-s: a step that would start after it is skipped with the reason (here every GPU step, GPU or not)."""
    monkeypatch.setattr(gpu_check.Gpu, "__init__", lambda self: setattr(self, "info", cuda.CudaLibrary(
        tmp_path / "lib.so", "sm_90", "test")))
    monkeypatch.setattr(gpu_check, "_clock", iter(range(0, 10**6, 1000)).__next__)
    code = gpu_check.main(["--no-build", "--budget-s", "1", "--out", str(tmp_path)])
    doc = json.loads(next(tmp_path.glob("gpu-check-*.json")).read_text())
    assert code == gpu_check.EXIT_OK and "kernels" not in doc and "timings" not in doc
    assert {"kernels", "timings"} <= {s["what"] for s in doc["skipped"] if s["why"].startswith("out of time")}


def test_onnxruntime_comparison_runs_both_decode_modes(tiny_artifact):
    """The comparison the check runs on the CUDA provider, run here with the CPU provider against itself: both
    decode modes, equal tokens and states."""
    rows = gpu_check.check_onnxruntime(tiny_artifact, ["cpu"])
    assert [(r["device"], r["decode"]) for r in rows] == [("cpu", "prefill"), ("cpu", "step")]
    assert all(r["ok"] and r["tokens_equal"] and r["state_rel_err"] == 0 for r in rows)


def test_options():
    a = gpu_check.parse_args([])
    assert a.out.endswith("bench/results") and not a.no_build and a.budget_s < 480  # the issue: under 8 minutes
    with pytest.raises(SystemExit) as e:
        gpu_check.parse_args(["--repeats", "0"])
    assert e.value.code == 2


def test_bytes_and_the_jetson_floor():
    """The bandwidth model of the timings: one decode step's scan at B = 1 reads and writes its state once (two 5120 x
    16 float32 arrays, A, ...), and 204.8 MB take 1 ms at AGX Orin's 204.8 GB/s."""
    b = gpu_check.layer_bytes(1, 1, 5120, 16, 4, 4)
    assert 3 * 5120 * 16 * 4 < b["scan"] < 4 * 5120 * 16 * 4 and b["conv"] < b["scan"]
    assert gpu_check.at_jetson(204_800_000)["agx_orin"] == pytest.approx(1.0)
