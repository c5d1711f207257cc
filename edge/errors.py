"""Exceptions of the runtime. Each message names what is wrong and where (stream, file, tensor)."""

from __future__ import annotations

import logging

log = logging.getLogger("cobra_edge")


class CobraEdgeError(Exception):
    """Base of every error the runtime raises on purpose."""


class ManifestError(CobraEdgeError, ValueError):
    """An artifact directory or its manifest.json is missing, malformed, tampered with or unsafe."""


class FrameError(CobraEdgeError, ValueError):
    """A frame given to a stream cannot be used (names the stream and the problem)."""


class PromptError(CobraEdgeError, ValueError):
    """A prompt is not text the model can take (not a str, not encodable as UTF-8)."""


class StreamError(CobraEdgeError, RuntimeError):
    """A stream cannot do what was asked (closed, no free slot, unknown name)."""


class NonFiniteError(StreamError):
    """A stream's state or the model's output holds NaN or infinity (names the stream and the tensor)."""


class RuntimeFault(CobraEdgeError, RuntimeError):
    """An exception nobody planned for, caught where a batch is answered and turned into the error of each stream
    it touched, so the worker goes on (the original exception is its ``__cause__``, logged with its traceback)."""


class WorkerFailed(CobraEdgeError, RuntimeError):
    """The scheduler's worker stopped on a failure of its own (not of a frame): nothing more will be answered."""


def as_stream_error(error: BaseException, stream: str, where: str) -> Exception:
    """The error to report for one stream: ours as they are, anything else wrapped in a RuntimeFault that names the
    stream and where it happened (the caller has logged it)."""
    from engines.base import EngineError

    if isinstance(error, (CobraEdgeError, EngineError)):
        return error
    fault = RuntimeFault(f"stream {stream!r}: unexpected {type(error).__name__} in {where}: {error}")
    fault.__cause__ = error
    return fault


def log_unexpected(error: BaseException, where: str) -> None:
    """Log an exception that is not one of ours, with its traceback (once, where it is caught)."""
    from engines.base import EngineError

    if not isinstance(error, (CobraEdgeError, EngineError)):
        log.error("unexpected %s in %s: %s", type(error).__name__, where, error, exc_info=error)
