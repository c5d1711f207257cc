"""The external-data references of an ONNX file, read from its protobuf bytes (no ``onnx`` package on the robot).

    refs = external_refs("prefill.onnx")   # {initializer name: ExternalRef(location, offset, length, dtype, dims)}

Walks ModelProto -> graph -> initializer (and the initializers of subgraphs: node attributes, local functions),
reading only the fields it needs: a TensorProto's name, dims, data_type, data_location and external_data. The
runtime uses it to hand ONNX Runtime every external initializer from one mapping of the artifact's weights file,
and to refuse a graph that refers to data anywhere else.

Field numbers (onnx.proto3): ModelProto.graph 7, .functions 25; GraphProto.node 1, .initializer 5;
NodeProto.attribute 5; AttributeProto.t 5, .g 6, .tensors 10, .graphs 11; FunctionProto.node 7;
TensorProto.dims 1, .data_type 2, .name 8, .external_data 13, .data_location 14; StringStringEntryProto.key 1, .value 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# TensorProto.DataType -> numpy dtype name (those an exported graph may hold)
DTYPES = {1: "float32", 2: "uint8", 3: "int8", 4: "uint16", 5: "int16", 6: "int32", 7: "int64", 9: "bool",
          10: "float16", 11: "float64", 12: "uint32", 13: "uint64"}
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL


class OnnxFileError(ValueError):
    """The file is not a well-formed ONNX protobuf, or an external reference is malformed (names the file)."""


@dataclass(frozen=True)
class ExternalRef:
    name: str
    location: str
    offset: int
    length: int
    dtype: str
    dims: tuple[int, ...]


def _varint(buf: memoryview, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if i >= len(buf):
            raise IndexError("varint runs past the end")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
        if shift > 63:
            raise ValueError("varint longer than 10 bytes")


def _fields(buf: memoryview):
    """(field number, wire type, value) of a message: ints for varint / fixed fields, memoryviews for bytes."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = int.from_bytes(buf[i:i + 8], "little"), i + 8
        elif wire == 2:
            size, i = _varint(buf, i)
            if i + size > n:
                raise IndexError("a field runs past the end of its message")
            value, i = buf[i:i + size], i + size
        elif wire == 5:
            value, i = int.from_bytes(buf[i:i + 4], "little"), i + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        yield number, wire, value


def _tensor(buf: memoryview) -> ExternalRef | None:
    name, dims, dtype, location, info = "", [], 0, 0, {}
    for number, wire, value in _fields(buf):
        if number == 1:  # dims: repeated int64, packed or not
            if wire == 2:
                j = 0
                while j < len(value):
                    d, j = _varint(value, j)
                    dims.append(d)
            else:
                dims.append(value)
        elif number == 2:
            dtype = value
        elif number == 8:
            name = bytes(value).decode("utf-8")
        elif number == 14:
            location = value
        elif number == 13:
            entry = {k: bytes(v).decode("utf-8") for k, _, v in _fields(value) if k in (1, 2)}
            info[entry.get(1, "")] = entry.get(2, "")
    if location != EXTERNAL:
        return None
    try:
        offset, length = int(info.get("offset", 0)), int(info["length"])
    except (KeyError, ValueError):
        raise ValueError(f"initializer {name!r}: external data without a valid length/offset: {info}") from None
    return ExternalRef(name, info.get("location", ""), offset, length, DTYPES.get(dtype, f"type {dtype}"), tuple(dims))


def _graph(buf: memoryview, out: dict) -> None:
    for number, _, value in _fields(buf):
        if number == 5:  # initializer
            ref = _tensor(value)
            if ref is not None:
                out[ref.name] = ref
        elif number == 1:  # node: subgraphs in its attributes
            _node(value, out)


def _node(buf: memoryview, out: dict) -> None:
    for number, _, value in _fields(buf):
        if number != 5:
            continue
        for a_number, _, a_value in _fields(value):  # AttributeProto
            if a_number in (6, 11):
                _graph(a_value, out)
            elif a_number in (5, 10):
                ref = _tensor(a_value)
                if ref is not None:
                    out[ref.name] = ref


def external_refs(path: str | Path) -> dict[str, ExternalRef]:
    """Every initializer (or attribute tensor) of the model whose data lives outside the file."""
    data = memoryview(Path(path).read_bytes())
    out: dict[str, ExternalRef] = {}
    try:
        for number, _, value in _fields(data):
            if number == 7:
                _graph(value, out)
            elif number == 25:  # FunctionProto: its nodes' attributes may hold subgraphs
                for f_number, _, f_value in _fields(value):
                    if f_number == 7:
                        _node(f_value, out)
    except (IndexError, ValueError, UnicodeDecodeError) as e:
        raise OnnxFileError(f"{path}: not a well-formed ONNX file ({e})") from None
    return out
