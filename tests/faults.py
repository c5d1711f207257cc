"""Hostile inputs shared by the fault-injection tests: byte strings and frames a tester would send."""

import json
import struct
import zlib


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose IHDR claims width x height (its one IDAT holds a single row): a decompression bomb."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = b"\x00" + bytes(3 * min(width, 4096))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(row)) + chunk(b"IEND", b"")


class FaultyEngine:
    """Wraps an engine; after each run ``fault(call, feeds, outputs)`` may raise, or damage the outputs in place
    (call counts from 1). It has no IO-bound loop, so a decode through it goes through ``run`` too."""

    def __init__(self, engine, fault):
        self.engine, self.fault, self.calls = engine, fault, 0
        self.inputs, self.outputs, self.name = engine.inputs, engine.outputs, engine.name

    def run(self, feeds):
        self.calls += 1
        out = self.engine.run(feeds)
        self.fault(self.calls, feeds, out)
        return out


def raise_on_call(n: int, error: BaseException):
    """A ``FaultyEngine`` fault that raises ``error`` on call ``n``."""
    def fault(call, feeds, out):
        if call == n:
            raise error
    return fault


def raise_on_prefill(n: int, error: BaseException):
    """A ``FaultyEngine`` fault for the prefill graph that raises ``error`` on its n-th prompt prefill (a call of more
    than one token: the runtime also decodes through the prefill graph, one token at a time)."""
    seen = []

    def fault(call, feeds, out):
        if feeds["inputs_embeds"].shape[1] > 1:
            seen.append(call)
            if len(seen) == n:
                raise error
    return fault


def edit_manifest(artifact, fn) -> None:
    """Change an artifact's manifest.json in place: ``fn(raw)`` edits the parsed document."""
    path = artifact / "manifest.json"
    raw = json.loads(path.read_text())
    fn(raw)
    path.write_text(json.dumps(raw))
