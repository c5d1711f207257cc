"""An artifact's weights file, mapped once and shared by every graph of a runtime.

    weights = MappedWeights("artifact/weights.bin")
    arrays = weights.arrays_for("artifact/prefill.onnx")    # {initializer name: read-only array over the mapping}
    engine = load_engine("onnxruntime", "artifact/prefill.onnx", initializers=arrays)

Each graph file refers to its weights as ONNX external data in that one file (export/weight_store.py); here every
reference becomes a numpy view of a single read-only mapping, and the backend hands those views to its sessions
without copying (ONNX Runtime: ``SessionOptions.add_initializer``): a weight two graphs share (the embedding table
of the embed graph's Gather and of the head) is one region of one mapping. The pages are the file's (page cache):
read from disk when first touched, dropped from this process by ``release`` once the sessions have pre-packed
what they pre-pack, and reclaimable by the kernel when memory is short.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import numpy as np

from .base import EngineError
from .onnxfile import ExternalRef, OnnxFileError, external_refs


class WeightsError(EngineError, ValueError):
    """A weights file or a graph's reference into it is missing, truncated or wrong (names the file and tensor)."""


class MappedWeights:
    def __init__(self, path: str | os.PathLike, expected_bytes: int | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise WeightsError(f"{self.path}: weights file missing")
        size = self.path.stat().st_size
        if expected_bytes is not None and size != expected_bytes:
            raise WeightsError(f"{self.path}: {size} bytes, the manifest says {expected_bytes} (truncated or replaced?)")
        self.size = size
        self._map = np.memmap(self.path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)

    def array(self, ref: ExternalRef, where: str = "") -> np.ndarray:
        """The tensor ``ref`` points at, as a read-only view of the mapping (no copy)."""
        what = f"{where}initializer {ref.name!r}"
        try:
            dtype = np.dtype(ref.dtype)
        except TypeError:
            raise WeightsError(f"{what}: unsupported data type {ref.dtype}") from None
        count = int(np.prod(ref.dims)) if ref.dims else 1
        if count * dtype.itemsize != ref.length:
            raise WeightsError(f"{what}: {ref.length} bytes do not hold {ref.dtype}{list(ref.dims)}")
        if ref.offset < 0 or ref.offset + ref.length > self.size:
            raise WeightsError(f"{what}: bytes {ref.offset}..{ref.offset + ref.length} lie outside {self.path.name} "
                               f"({self.size} bytes: truncated?)")
        if ref.offset % dtype.itemsize:
            raise WeightsError(f"{what}: offset {ref.offset} is not aligned to its {ref.dtype} elements")
        return self._map[ref.offset:ref.offset + ref.length].view(dtype).reshape(ref.dims)

    def arrays_for(self, graph: str | os.PathLike) -> dict[str, np.ndarray]:
        """Every external initializer of the graph file, which must all live in this weights file."""
        graph = Path(graph)
        try:
            refs = external_refs(graph)
        except OnnxFileError as e:
            raise WeightsError(str(e)) from None
        arrays = {}
        for name, ref in refs.items():
            if Path(ref.location).name != ref.location or ref.location != self.path.name:
                raise WeightsError(f"{graph}: initializer {name!r} refers to {ref.location!r}, not to the artifact's "
                                   f"weights file {self.path.name!r}: refused")
            arrays[name] = self.array(ref, f"{graph.name}: ")
        return arrays

    def release(self, arrays: dict[str, np.ndarray] | None = None) -> None:
        """Drop mapped pages from this process's resident memory (they are read again from the file, or the page
        cache, when touched): all of them, or those holding ``arrays`` (views from ``arrays_for``; the pages at
        their edges too, which only costs a neighbour a re-read). Once a session has pre-packed its matmul weights
        into its own layout, the originals are read again only by the few kernels that do not pre-pack (a Gather
        reads the rows of its ids): releasing each graph's pages after its session is made keeps the load's peak
        at what the sessions hold plus one graph's weights, not plus all of them."""
        m = getattr(self._map, "_mmap", None)
        if m is None or m.closed:
            return
        if arrays is None:
            m.madvise(mmap.MADV_DONTNEED)
            return
        base, page = self._map.__array_interface__["data"][0], mmap.PAGESIZE
        for a in arrays.values():
            start = a.__array_interface__["data"][0] - base
            first, end = start - start % page, min(-(-(start + a.nbytes) // page) * page, self.size)
            if end > first:
                m.madvise(mmap.MADV_DONTNEED, first, end - first)

    def resident_bytes_of(self, arrays: dict[str, np.ndarray]) -> int:
        """Bytes of distinct regions among ``arrays`` (a weight shared by two graphs counts once)."""
        regions = {(a.__array_interface__["data"][0], a.nbytes) for a in arrays.values()}
        return sum(n for _, n in regions)
