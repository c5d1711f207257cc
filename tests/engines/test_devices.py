"""Device selection (engines/devices.py): unknown names, a missing onnxruntime-gpu, a missing CUDA library or driver and
a missing TensorRT are errors that name what to install; the TensorRT provider's options keep the cobra_edge ops on
the CUDA provider and cache engines per graph and weights hash. (This machine's ONNX Runtime has only the CPU
provider: the GPU sessions themselves are not run here.)"""

import onnxruntime as ort
import pytest

from engines import kernels
from engines.devices import DeviceUnavailable, engine_cache_dir, providers_for

CPU_ONLY = ["CPUExecutionProvider"]
WITH_CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_unknown_device_is_named():
    with pytest.raises(DeviceUnavailable, match="unknown device 'gpu'; use one of cpu, cuda, tensorrt"):
        providers_for("gpu", CPU_ONLY, "k")


@pytest.mark.parametrize("device", ["cuda", "tensorrt"])
def test_missing_onnxruntime_gpu_is_named(device):
    with pytest.raises(DeviceUnavailable, match="no CUDAExecutionProvider.*install onnxruntime-gpu"):
        providers_for(device, CPU_ONLY, "k")


def test_missing_tensorrt_is_named():
    with pytest.raises(DeviceUnavailable, match="no TensorrtExecutionProvider.*TensorRT"):
        providers_for("tensorrt", WITH_CUDA, "k")


def test_tensorrt_options(monkeypatch, tmp_path):
    monkeypatch.setenv("COBRA_EDGE_TRT_CACHE", str(tmp_path))
    providers, options = providers_for("tensorrt", ["TensorrtExecutionProvider", *WITH_CUDA], "abc-def")
    assert providers == ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    trt = options[0]
    assert set(trt["trt_op_types_to_exclude"].split(",")) == set(kernels.OPS)
    assert trt["trt_engine_cache_path"] == str(tmp_path / "abc-def") == str(engine_cache_dir("abc-def"))
    assert trt["trt_fp16_enable"] == "True" and trt["trt_engine_cache_enable"] == "True"
    assert providers_for("cuda", WITH_CUDA, "k") == (WITH_CUDA, [{"device_id": "0"}, {}])


@pytest.fixture
def graph(tmp_path):
    pytest.importorskip("onnx")
    from tests.engines.test_kernels import _one_node_graph

    return _one_node_graph(tmp_path / "scan.onnx")


def test_engine_on_cuda_without_onnxruntime_gpu(graph):
    from engines import load_engine

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has the CUDA provider")
    with pytest.raises(DeviceUnavailable, match="graph 'scan'.*install onnxruntime-gpu"):
        load_engine("onnxruntime", graph, device="cuda")


def test_engine_on_cuda_without_the_cuda_kernels(graph, monkeypatch):
    """onnxruntime-gpu present (simulated) but cobra-edge's CUDA library missing, or no CUDA driver: named errors,
    before any session is made."""
    from engines import load_engine
    from engines.kernels import cuda

    monkeypatch.setattr(ort, "get_available_providers", lambda: WITH_CUDA)
    monkeypatch.setenv(cuda.ENV, "/nonexistent/_cobra_cuda.so")
    with pytest.raises(DeviceUnavailable, match="needs cobra-edge's CUDA kernels.*no such file"):
        load_engine("onnxruntime", graph, device="cuda")
    monkeypatch.delenv(cuda.ENV)
    cuda.cuda_library.cache_clear()
    try:
        cuda.cuda_library()
    except cuda.CudaUnavailable:
        with pytest.raises(DeviceUnavailable, match="needs cobra-edge's CUDA kernels.*(libcuda|not built)"):
            load_engine("onnxruntime", graph, device="cuda")
    else:
        pytest.skip("a GPU is here")


def test_runtime_load_refuses_an_unknown_device(tmp_path):
    from edge.runtime import Runtime

    with pytest.raises(DeviceUnavailable, match="unknown device 'gpu'"):
        Runtime.load(tmp_path, device="gpu")  # refused before the directory is read


def test_cli_refuses_an_unknown_device(tmp_path, capsys):
    from edge.cli import main

    with pytest.raises(SystemExit):
        main(["run", str(tmp_path), "--synthetic", "--device", "gpu"])  # argparse: not a choice
    assert "invalid choice: 'gpu'" in capsys.readouterr().err
