"""One weights file per artifact: every tensor of every graph and precision variant stored once.

    store = WeightStore(out_dir)                       # out_dir/weights.bin
    store.bind(model)                                   # the model's weights moved into the file, read back mapped
    table = store.externalize(onnx_ir_model)            # every initializer -> an external reference into the file
    store.close()

Tensors are stored by content (SHA-1 of their bytes): the embedding table read by the embed graph's Gather and by
the head's Gemm, every projection read by both the prefill and the step graph, a conv weight the step reads
reshaped, the folded ``A = -exp(A_log)`` of both graphs: each one region of the file. Graph files keep standard
ONNX external-data references (``location: weights.bin``, offset, length), so any ONNX tool reads them; the
runtime maps the file once and hands every session the same memory (edge/weights.py).

``bind`` is the export's memory trick: once a module's parameters are in the file, they are replaced by views of
a copy-on-write mapping of it, so PyTorch (reference), the exporter and ONNX Runtime (parity) all read the same
pages, and the export of a model needs its weights in memory about once.
"""

from __future__ import annotations

import hashlib
import mmap
import os
from pathlib import Path

import numpy as np
import torch

WEIGHTS_FILE = "weights.bin"
ALIGN = 64  # every tensor starts at a multiple of 64 bytes: aligned for any dtype and for SIMD loads
INLINE_BYTES = 128  # smaller constants (shapes, scalars, axes) stay inside the graph file: they are not weights


class WeightStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.path = self.root / WEIGHTS_FILE
        self._file = open(self.path, "wb")
        self.size = 0
        self._by_digest: dict[bytes, int] = {}
        self._maps: list[tuple[int, int, mmap.mmap, int]] = []  # (start, end, mapping, its base address)
        self.tensors = 0  # unique tensors stored

    # writing

    def put(self, array: np.ndarray) -> int:
        """Store ``array``'s bytes once; -> their offset in the file (the same offset for the same bytes). An array
        that is already a view of this file (a bound weight) is found by its address, without hashing."""
        data = np.ascontiguousarray(array)
        known = self._offset_of(data)
        if known is not None:
            return known
        view = memoryview(data.reshape(-1).view(np.uint8)) if data.size else memoryview(b"")
        digest = hashlib.sha1(view).digest() + data.nbytes.to_bytes(8, "little")
        offset = self._by_digest.get(digest)
        if offset is not None:
            return offset
        pad = -self.size % ALIGN
        if pad:
            self._file.write(b"\0" * pad)
            self.size += pad
        offset = self.size
        self._file.write(view)
        self.size += data.nbytes
        self._by_digest[digest] = offset
        self.tensors += 1
        return offset

    def _offset_of(self, data: np.ndarray) -> int | None:
        if not data.nbytes:
            return None
        address = data.__array_interface__["data"][0]
        for start, end, _, base in self._maps:
            if base <= address and address + data.nbytes <= base + (end - start):
                return start + (address - base)
        return None

    def externalize(self, model) -> dict[str, dict]:
        """Move every initializer of an ``onnx_ir`` model of at least INLINE_BYTES into the file (stored once) and
        make it an external reference there. -> {initializer name: {offset, bytes, dtype, shape}}."""
        import onnx_ir as ir

        table = {}
        for name, value in model.graph.initializers.items():
            tensor = value.const_value
            if tensor is None or tensor.nbytes < INLINE_BYTES:
                continue
            array = tensor.numpy()
            offset = self.put(array)
            table[name] = {"offset": offset, "bytes": int(array.nbytes), "dtype": str(array.dtype),
                           "shape": [int(d) for d in array.shape]}
            value.const_value = ir.ExternalTensor(WEIGHTS_FILE, offset, array.nbytes, tensor.dtype,
                                                  shape=ir.Shape(array.shape), name=name, base_dir=str(self.root))
        self._file.flush()
        return table

    # reading back: one mapping per range, so a page read by PyTorch and by ONNX Runtime is resident once

    def view(self, offset: int, nbytes: int) -> memoryview:
        """``nbytes`` at ``offset`` as a view of a copy-on-write mapping (writes never reach the file); ranges
        already mapped are reused, others map the file from ``offset`` to its current end."""
        for start, end, m, _ in self._maps:
            if start <= offset and offset + nbytes <= end:
                return memoryview(m)[offset - start:offset - start + nbytes]
        self._map_range(offset, self.size)
        return self.view(offset, nbytes)

    def _map_range(self, begin: int, end: int) -> None:
        self._file.flush()
        start = begin - begin % mmap.ALLOCATIONGRANULARITY
        with open(self.path, "rb") as f:
            m = mmap.mmap(f.fileno(), end - start, access=mmap.ACCESS_COPY, offset=start)
        base = np.frombuffer(m, dtype=np.uint8).__array_interface__["data"][0] if end > start else 0
        self._maps.append((start, end, m, base))

    def arrays_for(self, graph: str | os.PathLike) -> dict[str, np.ndarray]:
        """The graph file's external initializers as views of this store's mappings (for its parity check: ONNX
        Runtime then reads the pages the PyTorch reference reads)."""
        from engines.onnxfile import external_refs

        out = {}
        for name, ref in external_refs(graph).items():
            out[name] = np.frombuffer(self.view(ref.offset, ref.length), dtype=ref.dtype).reshape(ref.dims)
        return out

    def bind(self, module: torch.nn.Module) -> int:
        """Store every floating-point parameter and buffer of ``module``, then point each at its bytes in the file
        (one copy-on-write mapping: in-place changes stay in memory). The module's own copies are freed, so from
        here on the model, the exported graphs and ONNX Runtime's sessions share one mapped copy. -> bytes bound."""
        tensors = [(owner, name, t) for owner, name, t in _tensors(module)
                   if t.is_floating_point() and t.numel() and t.device.type == "cpu"]
        first = None
        placed = []
        for owner, name, t in tensors:
            array = t.detach().contiguous().numpy()
            offset = self.put(array)
            first = offset if first is None else min(first, offset)
            placed.append((owner, name, offset, array.dtype, array.shape, array.nbytes))
        if not placed:
            return 0
        self._map_range(first, self.size)
        with torch.no_grad():
            for owner, name, offset, dtype, shape, nbytes in placed:
                mapped = torch.from_numpy(np.frombuffer(self.view(offset, nbytes), dtype=dtype).reshape(shape))
                if isinstance(getattr(owner, name), torch.nn.Parameter):
                    getattr(owner, name).data = mapped
                else:
                    setattr(owner, name, mapped)
        return sum(p[-1] for p in placed)

    def compact(self, graphs: list[Path]) -> int:
        """Keep only the regions the ``graphs`` refer to: the model's weights were stored whole when bound, and a
        few no graph reads (A_log, whose graphs read the folded A = -exp(A_log); vision blocks after the feature
        block). The kept regions are copied by the kernel (no pass through this process's memory) into a new
        file that replaces this one, and every graph's references are renumbered. -> bytes dropped."""
        import onnx

        from engines.onnxfile import external_refs

        self._file.close()
        used = sorted({(r.offset, r.length) for g in graphs for r in external_refs(g).values()})
        if sum(n for _, n in used) + ALIGN * len(used) >= self.size:
            return 0
        moved, size = {}, 0
        tmp = self.path.with_name(WEIGHTS_FILE + ".compact")
        with open(self.path, "rb") as src, open(tmp, "wb") as dst:
            for offset, length in used:
                if offset in moved:
                    continue
                size += -size % ALIGN
                moved[offset] = size
                done = 0
                while done < length:
                    done += os.copy_file_range(src.fileno(), dst.fileno(), length - done, offset + done, size + done)
                size += length
        for g in graphs:
            model = onnx.load(str(g), load_external_data=False)
            for t in model.graph.initializer:
                for entry in t.external_data:
                    if entry.key == "offset":
                        entry.value = str(moved[int(entry.value)])
                if t.data_location == onnx.TensorProto.EXTERNAL and not any(e.key == "offset" for e in t.external_data):
                    t.external_data.add(key="offset", value=str(moved[0]))
            onnx.save(model, str(g))
        dropped = self.size - size
        os.replace(tmp, self.path)
        self.size, self.tensors = size, len(moved)
        return dropped

    def release(self) -> None:
        """Drop the mapped pages from this process's memory (they are read again from the file if touched; pages
        written since the mapping was made are kept)."""
        for _, _, m, _ in self._maps:
            if not m.closed:
                m.madvise(mmap.MADV_DONTNEED)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def _tensors(module: torch.nn.Module):
    """(owner module, attribute name, tensor) for every parameter and buffer, each tensor once (tied weights)."""
    seen = set()
    for owner in module.modules():
        for name, t in [*owner._parameters.items(), *owner._buffers.items()]:
            if t is None or id(t) in seen:
                continue
            seen.add(id(t))
            yield owner, name, t
