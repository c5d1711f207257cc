"""cobra-edge runtime: artifacts, per-stream Mamba state, preprocessing, decoding, profiling. No torch."""

__version__ = "0.1.0"
