"""The sequential parts of a Mamba layer as one ONNX node each that runs anywhere:

    cobra_edge.SelectiveScan   prefill: export/scan.py's selective_scan (any number of tokens)
    cobra_edge.SelectiveStep   decode step: selective_step (one token, no token axis)
    cobra_edge.ConvStep        decode step: export/mamba.py's causal_conv_step (the conv window and SiLU)
    cobra_edge.CausalConv      prefill: export/mamba.py's causal_conv (the conv over l tokens from a state, SiLU)

Each is exported as a single node of the custom domain ``cobra_edge`` (float32 in and out), and the model
carries a model-local ONNX function of the same domain and name whose body is the portable form in standard
operators (``selective_scan`` over ``scan_chunked``: one ``Scan`` over 16-token chunks; the steps: a handful of
elementwise operators):

- ONNX Runtime with engines/kernels' library registered runs the node with the fused CPU kernel (one pass over
  the tokens per channel, the state in L1, no per-token operator dispatch);
- any runtime without it (no library, another backend, an ONNX checker) expands the function: the same graph
  as before, the same numbers.

Glossary and shapes: export/scan.py.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import warnings
from dataclasses import dataclass
from typing import Callable

import torch
from torch import Tensor

from .mamba import causal_conv, causal_conv_step
from .scan import DEFAULT_CHUNK, scan_chunked, selective_scan, selective_step

OP_DOMAIN = "cobra_edge"
OP_VERSION = 1
SCAN_INPUTS = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "h")


@torch.library.custom_op("cobra_edge::selective_scan", mutates_args=())
def fused_selective_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                         dt_bias: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """export/scan.py's ``selective_scan`` as one opaque op: in eager PyTorch the reference loop, in an exported
    graph one ``cobra_edge.SelectiveScan`` node. Shapes: x, dt, z [b, l, d_in]; A [d_in, n]; B, C [b, l, n];
    D, dt_bias [d_in]; h [b, d_in, n] -> y [b, l, d_in], h_out [b, d_in, n]."""
    y, h_out = selective_scan(x, dt, A, B, C, D, z, dt_bias, h)
    return y.clone(), h_out.clone()  # a custom op returns fresh tensors, never views of its inputs


@torch.library.custom_op("cobra_edge::selective_step", mutates_args=())
def fused_selective_step(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                         dt_bias: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """export/scan.py's ``selective_step`` as one opaque op (``cobra_edge.SelectiveStep``). Shapes: x, dt, z
    [b, d_in]; A [d_in, n]; B, C [b, n]; D, dt_bias [d_in]; h [b, d_in, n] -> y [b, d_in], h_out [b, d_in, n]."""
    y, h_out = selective_step(x, dt, A, B, C, D, z, dt_bias, h)
    return y.clone(), h_out.clone()


@torch.library.custom_op("cobra_edge::conv_step", mutates_args=())
def fused_conv_step(x: Tensor, conv_state: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """export/mamba.py's ``causal_conv_step`` as one opaque op (``cobra_edge.ConvStep``). Shapes: x [b, d_in],
    conv_state [b, d_in, k-1], weight [d_in, k], bias [d_in] -> y [b, d_in], conv_state_out [b, d_in, k-1]."""
    y, state = causal_conv_step(x, conv_state, weight, bias)
    return y.clone(), state.clone()


@torch.library.custom_op("cobra_edge::causal_conv", mutates_args=())
def fused_causal_conv(x: Tensor, conv_state: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """export/mamba.py's ``causal_conv`` as one opaque op (``cobra_edge.CausalConv``). Shapes: x [b, l, d_in],
    conv_state [b, d_in, k-1], weight [d_in, k], bias [d_in] -> y [b, l, d_in], conv_state_out [b, d_in, k-1]."""
    y, state = causal_conv(x, conv_state, weight, bias)
    return y.clone(), state.clone()


@fused_selective_scan.register_fake
@fused_selective_step.register_fake
def _scan_shapes(x, dt, A, B, C, D, z, dt_bias, h):
    return torch.empty_like(x), torch.empty_like(h)


@fused_conv_step.register_fake
@fused_causal_conv.register_fake
def _conv_shapes(x, conv_state, weight, bias):
    return torch.empty_like(x), torch.empty_like(conv_state)


def _scan_shapes_of(tokens: bool):
    def shapes(d_inner: int, d_state: int, d_conv: int) -> dict[str, tuple]:
        lead = ("b", "l") if tokens else ("b",)
        return {"x": (*lead, d_inner), "dt": (*lead, d_inner), "A": (d_inner, d_state), "B": (*lead, d_state),
                "C": (*lead, d_state), "D": (d_inner,), "z": (*lead, d_inner), "dt_bias": (d_inner,),
                "h": ("b", d_inner, d_state)}
    return shapes


@dataclass(frozen=True)
class FusedOp:
    name: str  # ONNX op type in OP_DOMAIN
    torch_op: Callable  # the custom op the model calls
    portable: Callable  # the body, in ops torch exports as standard ONNX
    node_name: str  # the torch op (cobra_edge::<node_name>) and, per layer, the node: layers.{i}.mixer.<node_name>
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    shapes: Callable[[int, int, int], dict[str, tuple]]  # (d_inner, d_state, d_conv) -> input shapes; "b", "l" dynamic

    @property
    def qualified(self) -> str:
        return f"{OP_DOMAIN}.{self.name}"


OPS = {op.name: op for op in (
    FusedOp("SelectiveScan", fused_selective_scan,
            functools.partial(selective_scan, scan=functools.partial(scan_chunked, chunk=DEFAULT_CHUNK)),
            "selective_scan", SCAN_INPUTS, ("y", "h_out"), _scan_shapes_of(tokens=True)),
    FusedOp("SelectiveStep", fused_selective_step, selective_step, "selective_step", SCAN_INPUTS, ("y", "h_out"),
            _scan_shapes_of(tokens=False)),
    FusedOp("ConvStep", fused_conv_step, causal_conv_step, "conv_step", ("x", "conv_state", "weight", "bias"),
            ("y", "conv_state_out"),
            lambda d_inner, d_state, d_conv: {"x": ("b", d_inner), "conv_state": ("b", d_inner, d_conv - 1),
                                              "weight": (d_inner, d_conv), "bias": (d_inner,)}),
    FusedOp("CausalConv", fused_causal_conv, causal_conv, "causal_conv", ("x", "conv_state", "weight", "bias"),
            ("y", "conv_state_out"),
            lambda d_inner, d_state, d_conv: {"x": ("b", "l", d_inner), "conv_state": ("b", d_inner, d_conv - 1),
                                              "weight": (d_inner, d_conv), "bias": (d_inner,)}),
)}


@functools.cache
def _onnx_op(name: str):
    import onnxscript
    from onnx.defs import OpSchema

    op = OPS[name]
    schema = OpSchema(
        name, OP_DOMAIN, OP_VERSION,
        inputs=[OpSchema.FormalParameter(i, "T") for i in op.inputs],
        outputs=[OpSchema.FormalParameter(o, "T") for o in op.outputs],
        type_constraints=[("T", ["tensor(float)"], "float32, as the state")],
    )
    return onnxscript.values.Op(onnxscript.values.Opset(OP_DOMAIN, OP_VERSION), name, schema)


def translations() -> dict:
    """torch.onnx's custom_translation_table entries: each fused op written as one node of OP_DOMAIN."""
    return {getattr(torch.ops.cobra_edge, op.node_name).default:
            functools.partial(lambda name, *inputs: _onnx_op(name)(*inputs), op.name) for op in OPS.values()}


class _Portable(torch.nn.Module):
    def __init__(self, fn: Callable):
        super().__init__()
        self.fn = fn

    def forward(self, *inputs):
        return self.fn(*inputs)


@functools.cache
def portable_function(name: str, d_inner: int, d_state: int, d_conv: int) -> bytes:
    """The serialized ``onnx.FunctionProto`` of ``cobra_edge.<name>`` for these dimensions: the op's portable form
    exported by torch (batch, and tokens, dynamic), its initializers turned into Constant nodes (a function has
    none)."""
    import onnx
    from onnx import helper

    op = OPS[name]
    g = torch.Generator().manual_seed(0)
    sizes = {"b": 2, "l": 5}
    shapes = op.shapes(d_inner, d_state, d_conv)
    args = [torch.randn([sizes.get(s, s) for s in shapes[i]], generator=g) for i in op.inputs]
    if "A" in op.inputs:  # A < 0, as -exp(A_log)
        args[op.inputs.index("A")] = -args[op.inputs.index("A")].abs()
    dims = {"b": torch.export.Dim("b", min=1, max=4096), "l": torch.export.Dim.DYNAMIC}
    dyn = ({i: dims[s] for i, s in enumerate(shapes[n]) if isinstance(s, str)} for n in op.inputs)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(_Portable(op.portable), tuple(args), dynamo=True, input_names=list(op.inputs),
                                    output_names=list(op.outputs), dynamic_shapes=(tuple(dyn),), verbose=False)
    graph = program.model_proto.graph
    constants = [helper.make_node("Constant", [], [t.name], value=t) for t in graph.initializer]
    fn = helper.make_function(OP_DOMAIN, name, list(op.inputs), list(op.outputs), constants + list(graph.node),
                              list(program.model_proto.opset_import))
    fn.doc_string = (f"cobra-edge's {op.node_name} (export/scan.py) in standard operators; engines/kernels runs "
                     "this node as one fused kernel")
    onnx.checker.check_function(fn)
    return fn.SerializeToString()


def attach_portable_functions(model, d_inner: int, d_state: int, d_conv: int) -> tuple[str, ...]:
    """For each fused op an exported ``onnx_ir.Model`` calls: add its portable body as a model-local function and
    name its nodes after their layer (``layers.3.mixer.selective_scan``: the kernel's errors name the node).
    -> the ops found, as "cobra_edge.Name" (none: the model is left as it is)."""
    import onnx
    import onnx_ir as ir

    found = []
    for op in OPS.values():
        nodes = [node for node in model.graph if node.domain == OP_DOMAIN and node.op_type == op.name]
        if not nodes:
            continue
        for layer, node in enumerate(nodes):  # graph order is layer order
            node.name = f"layers.{layer}.mixer.{op.node_name}"
        proto = onnx.FunctionProto()
        proto.ParseFromString(portable_function(op.name, d_inner, d_state, d_conv))
        fn = ir.serde.deserialize_function(proto)
        model.functions[fn.identifier()] = fn
        model.opset_imports.setdefault(OP_DOMAIN, OP_VERSION)
        found.append(op.qualified)
    return tuple(found)
