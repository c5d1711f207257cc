"""Which ONNX Runtime execution providers run a graph, by device name, and the errors that name what to install.

    cpu        CPUExecutionProvider, cobra-edge's CPU kernels for the cobra_edge nodes (engines/kernels)
    cuda       CUDAExecutionProvider (onnxruntime-gpu), cobra-edge's CUDA kernels for the cobra_edge nodes
               (engines/kernels/cuda.py), the CPU provider behind it for what CUDA lacks
    tensorrt   TensorrtExecutionProvider for the standard operators (fp16 allowed, engines cached on disk, keyed by
               the graph and weights hashes), the cobra_edge nodes excluded from TensorRT so that they run on the CUDA
               provider with cobra-edge's CUDA kernels, the CPU provider last

Written and checked on CPU-only machines; the cuda and tensorrt paths have not been run on a GPU yet (docs/jetson.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import BackendUnavailable
from .kernels import OPS as COBRA_OPS  # the cobra_edge ops: never on TensorRT

DEVICES = ("cpu", "cuda", "tensorrt")
PROVIDER = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider", "tensorrt": "TensorrtExecutionProvider"}
GPU_HINT = ("install onnxruntime-gpu in place of onnxruntime (pip uninstall -y onnxruntime && pip install "
            "onnxruntime-gpu; on a Jetson the wheel for your JetPack from NVIDIA's Jetson AI Lab index, docs/jetson.md)")
TRT_HINT = ("TensorRT: JetPack ships it; elsewhere pip install tensorrt-cu12 (or NVIDIA's TensorRT packages) and an "
            "onnxruntime-gpu built with the TensorRT provider (docs/jetson.md)")


class DeviceUnavailable(BackendUnavailable):
    """An unknown device name, or a device this machine's ONNX Runtime, CUDA or TensorRT cannot run (names what to
    install)."""


def check_device(device: str) -> str:
    if device not in DEVICES:
        raise DeviceUnavailable(f"unknown device {device!r}; use one of {', '.join(DEVICES)}")
    return device


def engine_cache_dir(key: str) -> Path:
    """Where TensorRT engines of one graph are kept: $COBRA_EDGE_TRT_CACHE (e.g. a folder beside the artifact), else
    the user's cache ($COBRA_EDGE_CACHE or ~/.cache/cobra-edge, then tensorrt/), one folder per key (graph + weights
    hashes: a changed file never meets a stale engine)."""
    base = os.environ.get("COBRA_EDGE_TRT_CACHE") or os.path.join(
        os.environ.get("COBRA_EDGE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "cobra-edge"), "tensorrt")
    return Path(base) / key


def providers_for(device: str, available: list[str], cache_key: str, device_id: int = 0
                  ) -> tuple[list[str], list[dict]]:
    """(providers, provider_options) for InferenceSession; DeviceUnavailable when ``available`` (ONNX Runtime's
    providers here) lacks what ``device`` needs."""
    check_device(device)
    if device == "cpu":
        return ["CPUExecutionProvider"], [{}]
    if "CUDAExecutionProvider" not in available:
        raise DeviceUnavailable(f"device {device!r}: this ONNX Runtime has no CUDAExecutionProvider (it has "
                                f"{', '.join(available)}): {GPU_HINT}")
    cuda = {"device_id": str(device_id)}
    if device == "cuda":
        return ["CUDAExecutionProvider", "CPUExecutionProvider"], [cuda, {}]
    if "TensorrtExecutionProvider" not in available:
        raise DeviceUnavailable(f"device 'tensorrt': this ONNX Runtime has no TensorrtExecutionProvider (it has "
                                f"{', '.join(available)}): {TRT_HINT}")
    cache = engine_cache_dir(cache_key)
    trt = {
        "device_id": str(device_id),
        "trt_fp16_enable": "True",  # TensorRT may pick fp16 kernels for the standard operators; our ops stay float32
        "trt_engine_cache_enable": "True",
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": "True",
        "trt_timing_cache_path": str(cache),
        # the cobra_edge nodes: TensorRT's parser would inline their function bodies (a Scan as a token-by-token ILoop)
        "trt_op_types_to_exclude": ",".join(COBRA_OPS),
    }
    return ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"], [trt, cuda, {}]


def check_started(device: str, started: list[str]) -> None:
    """ONNX Runtime drops a provider it cannot start (missing CUDA, cuDNN or TensorRT libraries) with a log line and
    goes on without it: here that is an error naming the device."""
    want = PROVIDER[device]
    if want not in started:
        what = TRT_HINT if device == "tensorrt" else ("the CUDA 12 runtime and cuDNN 9 libraries onnxruntime-gpu needs "
                                                      "(JetPack has them; elsewhere pip install onnxruntime-gpu[cuda,cudnn])")
        raise DeviceUnavailable(f"device {device!r}: ONNX Runtime could not start {want} (started: "
                                f"{', '.join(started)}); check {what}")
