"""Weight quantization of the language-model graphs, one weight at a time (no copy of the model in memory).

Every ``Gemm(x, W, [bias], transB=1)`` whose ``W`` is a stored weight (the form every projection and the LM head
take: export/mamba.py ``linear``) is replaced; everything else (norms, conv, A, D, dt bias, the embedding Gather,
the ssm state and scan) stays float32 and is shared with the float32 graphs in the weights file.

int8  W8A8 with scales that never mix streams: the weight per output channel (symmetric int8, a float32 scale per
      row of W), the activation per row (per token, per stream: symmetric, scale = max |x| / 127, stored as uint8
      with the zero point 128 so that ONNX Runtime's fast u8 x s8 MatMulInteger runs), the int32 product rescaled
      by both scales. ONNX Runtime's own dynamic quantization (DynamicQuantizeLinear) takes one scale for the
      whole activation tensor, so a stream's answer depended on the other streams in its batch (measured on the
      embedded model: 10.8 % of 120 answers changed between batch 1 and batch 8); per-row scales cannot.
int4  block-wise weight-only quantization for ONNX Runtime's MatMulNBits (com.microsoft): W [N, K] in blocks of
      ``block_size`` along K, 4-bit codes with a float32 scale per block (symmetric), packed by ORT's own
      ``quantize_matmul_4bits``; activations stay float32 (``accuracy_level`` 4 lets the CPU kernel compute in int8).

The graphs are read with onnx_ir, whose external tensors are loaded lazily from the weights file, and written back
through the artifact's WeightStore: the export's memory grows by one weight's copies at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

INT4_BLOCK = 32


def _gemm_weight(node, initializers, keep: tuple[str, ...] = ()) -> np.ndarray | None:
    """W [N, K] of ``Gemm(x, W, [b], transB=1)`` with default alpha / beta / transA, when W is a stored weight
    whose name contains none of ``keep``."""
    if node.op_type != "Gemm" or node.domain not in ("", "ai.onnx"):
        return None
    attrs = {k: a.value for k, a in node.attributes.items()}
    if attrs.get("transB") != 1 or attrs.get("transA", 0) != 0 or attrs.get("alpha", 1.0) != 1.0 \
            or attrs.get("beta", 1.0) != 1.0:
        return None
    w = node.inputs[1]
    if w is None or w.name not in initializers or w.const_value is None or any(k in w.name for k in keep):
        return None
    array = w.const_value.numpy()
    return array if array.dtype == np.float32 and array.ndim == 2 else None


def _replace(graph, node, new_nodes, output) -> None:
    """Put ``new_nodes`` where ``node`` was; ``output`` takes its place (and its name, if it was a graph output)."""
    graph.insert_before(node, new_nodes)
    old = node.outputs[0]
    name, is_output = old.name, old in graph.outputs
    old.replace_all_uses_with(output, replace_graph_outputs=True)
    graph.remove(node, safe=True)
    if is_output:
        output.name = name


def _initializer(graph, name: str, array: np.ndarray):
    import onnx_ir as ir

    value = ir.Value(name=name, shape=ir.Shape(array.shape), type=ir.TensorType(ir.DataType.from_numpy(array.dtype)),
                     const_value=ir.tensor(array, name=name))
    graph.register_initializer(value)
    return value


def _bias(graph, node, y, name: str):
    """Gemm's optional bias C, added after the quantized product."""
    import onnx_ir as ir

    if len(node.inputs) < 3 or node.inputs[2] is None:
        return [], y
    add = ir.Node("", "Add", [y, node.inputs[2]], name=f"{name}_bias")
    return [add], add.outputs[0]


INT8_ZERO_POINT = 128  # activations: round(x / scale) + 128 in [1, 255]


def _quantize_rows(graph, x, name: str):
    """Nodes quantizing a Gemm's activation ``x`` [M, K] per row: (nodes, x_q uint8 [M, K], scale [M, 1], the
    scalar zero point for MatMulInteger).
    One QuantizeLinear along axis 0 (a scale and the zero point 128 per row) does the divide, round and shift."""
    import onnx_ir as ir

    consts = {"axes": np.array([-1], np.int64), "eps": np.array(1e-30, np.float32),
              "inv_qmax": np.array(1 / 127, np.float32), "zp": np.array([INT8_ZERO_POINT], np.uint8),
              "unsqueeze": np.array([1], np.int64), "zp_scalar": np.array(INT8_ZERO_POINT, np.uint8)}
    c = {}  # shared by every activation of the graph: registered once
    for k, v in consts.items():
        const = f"int8_rows_{k}"
        c[k] = graph.initializers[const] if const in graph.initializers else _initializer(graph, const, v)
    absx = ir.Node("", "Abs", [x], name=f"{name}_abs")
    amax = ir.Node("", "ReduceMax", [absx.outputs[0], c["axes"]], attributes=[ir.AttrInt64("keepdims", 0)],
                   name=f"{name}_absmax")
    floor = ir.Node("", "Max", [amax.outputs[0], c["eps"]], name=f"{name}_absmax_floor")  # an all-zero row
    scale = ir.Node("", "Mul", [floor.outputs[0], c["inv_qmax"]], name=f"{name}_scale")  # [M]
    shape = ir.Node("", "Shape", [scale.outputs[0]], name=f"{name}_rows")
    zp = ir.Node("", "Expand", [c["zp"], shape.outputs[0]], name=f"{name}_zero_points")  # [M] of 128
    quant = ir.Node("", "QuantizeLinear", [x, scale.outputs[0], zp.outputs[0]], attributes=[ir.AttrInt64("axis", 0)],
                    name=f"{name}_quantize")
    column = ir.Node("", "Unsqueeze", [scale.outputs[0], c["unsqueeze"]], name=f"{name}_scale_column")  # [M, 1]
    nodes = [absx, amax, floor, scale, shape, zp, quant, column]
    return nodes, quant.outputs[0], column.outputs[0], c["zp_scalar"]


def quantize_weight_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """W [N, K] float32 -> (W^T as int8 [K, N], scale [N] float32): symmetric per output channel."""
    scale = np.maximum(np.abs(w).max(axis=1), np.float32(1e-30)).astype(np.float32) / np.float32(127.0)
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return np.ascontiguousarray(q.T), scale


def int8_gemms(graph, keep: tuple[str, ...] = ()) -> int:
    """Rewrite every quantizable Gemm of ``graph`` as W8A8 with per-channel weight and per-row activation scales
    (the module docstring; those whose weight's name contains one of ``keep`` stay float32); -> how many."""
    import onnx_ir as ir
    from onnx import TensorProto

    initializers = graph.initializers
    quantized_inputs = {}  # one row quantization per activation, however many Gemms read it
    count = 0
    for node in list(graph):
        w = _gemm_weight(node, initializers, keep)
        if w is None:
            continue
        wname = node.inputs[1].name
        q, scale = quantize_weight_rows(w)
        wq = _initializer(graph, wname + "_int8", q)
        ws = _initializer(graph, wname + "_int8_scale", scale)
        x = node.inputs[0]
        new = []
        if x.name not in quantized_inputs:
            rows, xq, xs, zp = _quantize_rows(graph, x, f"{x.name}_rows")
            new += rows
            quantized_inputs[x.name] = (xq, xs, zp)
        xq, xs, zp = quantized_inputs[x.name]
        base = node.name or node.outputs[0].name
        mm = ir.Node("", "MatMulInteger", [xq, wq, zp], name=f"{base}_MatMulInteger")
        cast = ir.Node("", "Cast", [mm.outputs[0]], attributes=[ir.AttrInt64("to", TensorProto.FLOAT)],
                       name=f"{base}_cast")
        by_channel = ir.Node("", "Mul", [cast.outputs[0], ws], name=f"{base}_weight_scale")
        by_row = ir.Node("", "Mul", [by_channel.outputs[0], xs], name=f"{base}_row_scale")
        tail, y = _bias(graph, node, by_row.outputs[0], base)
        _replace(graph, node, [*new, mm, cast, by_channel, by_row, *tail], y)
        count += 1
    return count


def int4_gemms(graph, keep: tuple[str, ...] = (), block_size: int = INT4_BLOCK, accuracy_level: int = 4) -> int:
    """Rewrite every quantizable Gemm of ``graph`` as MatMulNBits (4 bits, symmetric blocks; those whose weight's
    name contains one of ``keep`` stay float32); -> how many."""
    import onnx_ir as ir
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

    initializers = graph.initializers
    count = 0
    for node in list(graph):
        w = _gemm_weight(node, initializers, keep)
        if w is None:
            continue
        n, k = w.shape
        blocks = (k + block_size - 1) // block_size
        packed = np.zeros((n, blocks, block_size // 2), np.uint8)
        scales = np.zeros(n * blocks, np.float32)
        zero_points = np.zeros(n * ((blocks + 1) // 2), np.uint8)
        quantize_matmul_4bits(packed, np.ascontiguousarray(w.T), scales, zero_points, block_size, n, k, True)
        name = node.inputs[1].name + "_int4"
        b = _initializer(graph, name + "_quantized", packed)
        s = _initializer(graph, name + "_scales", scales)
        base = node.name or node.outputs[0].name
        mm = ir.Node("com.microsoft", "MatMulNBits", [node.inputs[0], b, s],
                     attributes=[ir.AttrInt64("K", k), ir.AttrInt64("N", n), ir.AttrInt64("bits", 4),
                                 ir.AttrInt64("block_size", block_size),
                                 ir.AttrInt64("accuracy_level", accuracy_level)], name=f"{base}_MatMulNBits")
        tail, y = _bias(graph, node, mm.outputs[0], base)
        _replace(graph, node, [mm, *tail], y)
        count += 1
    if count:
        graph.opset_imports.setdefault("com.microsoft", 1)
    return count


def quantize_graph(src: Path, dst: Path, precision: str, store=None, keep: tuple[str, ...] = ()) -> int:
    """Write ``dst``: the graph ``src`` with its weights quantized (``precision`` int8 or int4), except the
    projections whose weight's name contains one of ``keep`` (e.g. "out_proj"), which stay float32; its new tensors
    go to ``store`` (the artifact's weights file; inside ``dst`` when None). -> how many weights were quantized."""
    import onnx_ir as ir

    model = ir.load(str(src))
    rewrite = {"int8": int8_gemms, "int4": int4_gemms}[precision]
    count = rewrite(model.graph, tuple(keep))
    for name, value in list(model.graph.initializers.items()):  # the float32 weights the graph no longer reads
        if not value.uses() and value not in model.graph.outputs:
            del model.graph.initializers[name]
    model.graph.sort()
    if store is not None:
        store.externalize(model)
    else:
        for value in model.graph.initializers.values():
            if value.const_value is not None:
                value.const_value = ir.tensor(value.const_value.numpy(), name=value.name)
    ir.save(model, str(dst))
    return count
