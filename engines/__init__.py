"""Backends that run exported graphs behind one small protocol (``Engine``), chosen by name.

Backends are imported only when chosen, so a robot image needs only the one it uses.
"""

from __future__ import annotations

import importlib
import os

from .base import BackendUnavailable, Engine, EngineError, EngineInputError, TensorSpec, validate_feeds

# name -> (module, class, the package that provides it)
_BACKENDS = {
    "onnxruntime": ("engines.onnxruntime_backend", "OrtEngine", "onnxruntime (or onnxruntime-gpu on a Jetson)"),
}


def available_backends() -> list[str]:
    return sorted(_BACKENDS)


def load_engine(backend: str, path: str | os.PathLike, name: str | None = None, **options) -> Engine:
    """Open one graph with the named backend. Unknown names and missing packages are clear errors."""
    try:
        module_name, cls_name, package = _BACKENDS[backend]
    except KeyError:
        raise BackendUnavailable(
            f"unknown backend {backend!r}; available: {', '.join(available_backends())}"
        ) from None
    try:
        module = importlib.import_module(module_name)  # the backend module imports its package at the top
    except ImportError as e:
        raise BackendUnavailable(f"backend {backend!r} needs {package}: pip install it ({e})") from e
    return getattr(module, cls_name)(path, name=name, **options)


__all__ = [
    "BackendUnavailable", "Engine", "EngineError", "EngineInputError", "TensorSpec",
    "available_backends", "load_engine", "validate_feeds",
]
