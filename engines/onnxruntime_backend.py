"""ONNX Runtime backend: one ``InferenceSession`` per graph, CPU provider unless told otherwise."""

from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from .base import EngineError, TensorSpec, validate_feeds

_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(double)": "float64",
    "tensor(int64)": "int64",
    "tensor(int32)": "int32",
    "tensor(uint8)": "uint8",
    "tensor(bool)": "bool",
}


def _spec(arg) -> TensorSpec:
    dtype = _ORT_TYPES.get(arg.type)
    if dtype is None:
        raise EngineError(f"tensor {arg.name!r} has type {arg.type}, which cobra-edge does not handle")
    shape = tuple(d if isinstance(d, int) else (d or "?") for d in arg.shape)
    return TensorSpec(arg.name, dtype, shape)


class OrtEngine:
    """Runs one ONNX graph.

    providers: ONNX Runtime execution providers in order of preference (default: CPU only).
    threads: intra-op threads (default: ONNX Runtime's choice, the physical cores).
    """

    def __init__(self, path: str | os.PathLike, name: str | None = None,
                 providers: Sequence[str] | None = None, threads: int | None = None):
        self.name = name or os.path.splitext(os.path.basename(path))[0]
        self.path = os.fspath(path)
        providers = list(providers or ["CPUExecutionProvider"])
        available = ort.get_available_providers()
        unknown = [p for p in providers if p not in available]
        if unknown:
            raise EngineError(
                f"graph {self.name!r}: ONNX Runtime here lacks provider(s) {unknown}; available: {available}"
            )
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = int(threads)
            opts.inter_op_num_threads = 1
        opts.log_severity_level = 3  # errors only: warnings about unused initialisers are noise here
        try:
            self.session = ort.InferenceSession(self.path, sess_options=opts, providers=providers)
        except Exception as e:  # ORT raises its own exception types; keep the file name in the message
            raise EngineError(f"graph {self.name!r}: ONNX Runtime could not load {self.path}: {e}") from e
        self.inputs = {a.name: _spec(a) for a in self.session.get_inputs()}
        self.outputs = {a.name: _spec(a) for a in self.session.get_outputs()}
        self._output_names = list(self.outputs)

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        validate_feeds(self.name, self.inputs, feeds)
        try:
            values = self.session.run(self._output_names, dict(feeds))
        except Exception as e:  # ORT's pybind exceptions carry no graph name; add it
            shapes = {k: f"{v.dtype}{list(v.shape)}" for k, v in feeds.items()}
            raise EngineError(f"graph {self.name!r}: ONNX Runtime failed on inputs {shapes}: {e}") from e
        return dict(zip(self._output_names, values))
