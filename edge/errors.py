"""Exceptions of the runtime. Each message names what is wrong and where (stream, file, tensor)."""


class CobraEdgeError(Exception):
    """Base of every error the runtime raises on purpose."""


class ManifestError(CobraEdgeError, ValueError):
    """An artifact directory or its manifest.json is missing, malformed, tampered with or unsafe."""


class FrameError(CobraEdgeError, ValueError):
    """A frame given to a stream cannot be used (names the stream and the problem)."""


class StreamError(CobraEdgeError, RuntimeError):
    """A stream cannot do what was asked (closed, no free slot, unknown name)."""
