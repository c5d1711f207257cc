"""The selective scan as one ONNX node per layer, ``cobra_edge.SelectiveScan``, that runs anywhere.

The prefill graph calls export/scan.py's ``selective_scan`` contract once per layer
(x, dt, A, B, C, D, z, dt_bias, h -> y, h_out; float32). It is exported as a single node of the custom domain
``cobra_edge``, and the model carries a model-local ONNX function of the same domain and name whose body is the
portable form (``selective_scan`` over ``scan_chunked``: standard operators, one ``Scan`` over 16-token chunks):

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

import torch
from torch import Tensor

from .scan import DEFAULT_CHUNK, scan_chunked, selective_scan

OP_DOMAIN = "cobra_edge"
OP_NAME = "SelectiveScan"
OP_VERSION = 1
INPUTS = ("x", "dt", "A", "B", "C", "D", "z", "dt_bias", "h")
OUTPUTS = ("y", "h_out")


@torch.library.custom_op("cobra_edge::selective_scan", mutates_args=())
def fused_selective_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor,
                         dt_bias: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """export/scan.py's ``selective_scan`` as one opaque op: in eager PyTorch the reference loop, in an exported
    graph one ``cobra_edge.SelectiveScan`` node. Shapes: x, dt, z [b, l, d_in]; A [d_in, n]; B, C [b, l, n];
    D, dt_bias [d_in]; h [b, d_in, n] -> y [b, l, d_in], h_out [b, d_in, n]."""
    y, h_out = selective_scan(x, dt, A, B, C, D, z, dt_bias, h)
    return y.clone(), h_out.clone()  # a custom op returns fresh tensors, never views of its inputs


@fused_selective_scan.register_fake
def _fused_selective_scan_shapes(x, dt, A, B, C, D, z, dt_bias, h):
    return torch.empty_like(x), torch.empty_like(h)


@functools.cache
def _op():
    import onnxscript
    from onnx.defs import OpSchema

    schema = OpSchema(
        OP_NAME, OP_DOMAIN, OP_VERSION,
        inputs=[OpSchema.FormalParameter(name, "T") for name in INPUTS],
        outputs=[OpSchema.FormalParameter(name, "T") for name in OUTPUTS],
        type_constraints=[("T", ["tensor(float)"], "float32, as the state")],
    )
    return onnxscript.values.Op(onnxscript.values.Opset(OP_DOMAIN, OP_VERSION), OP_NAME, schema)


def _translate(*inputs):
    return _op()(*inputs)


def translations() -> dict:
    """torch.onnx's custom_translation_table entry that writes the op as one ``cobra_edge.SelectiveScan`` node."""
    return {torch.ops.cobra_edge.selective_scan.default: _translate}


class _PortableScan(torch.nn.Module):
    def __init__(self, chunk: int):
        super().__init__()
        self.chunk = chunk

    def forward(self, x, dt, A, B, C, D, z, dt_bias, h):
        return selective_scan(x, dt, A, B, C, D, z, dt_bias, h, scan=functools.partial(scan_chunked, chunk=self.chunk))


@functools.cache
def portable_function(d_inner: int, d_state: int, chunk: int = DEFAULT_CHUNK) -> bytes:
    """The serialized ``onnx.FunctionProto`` of ``cobra_edge.SelectiveScan`` for these dimensions: export/scan.py's
    ``selective_scan`` over ``scan_chunked`` exported by torch (batch and length dynamic), its initializers turned
    into Constant nodes (a function has none)."""
    import onnx
    from onnx import helper

    g = torch.Generator().manual_seed(0)
    b, l = 2, 5
    args = (torch.randn(b, l, d_inner, generator=g), torch.randn(b, l, d_inner, generator=g),
            -torch.rand(d_inner, d_state, generator=g), torch.randn(b, l, d_state, generator=g),
            torch.randn(b, l, d_state, generator=g), torch.randn(d_inner, generator=g),
            torch.randn(b, l, d_inner, generator=g), torch.randn(d_inner, generator=g),
            torch.randn(b, d_inner, d_state, generator=g))
    batch, length = torch.export.Dim("b", min=1, max=4096), torch.export.Dim.DYNAMIC
    dyn = tuple({0: batch, 1: length} if len(a.shape) == 3 and name != "h" else {0: batch} if name == "h" else {}
                for name, a in zip(INPUTS, args))
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(_PortableScan(chunk), args, dynamo=True, input_names=list(INPUTS),
                                    output_names=list(OUTPUTS), dynamic_shapes=dyn, verbose=False)
    graph = program.model_proto.graph
    constants = [helper.make_node("Constant", [], [t.name], value=t) for t in graph.initializer]
    fn = helper.make_function(OP_DOMAIN, OP_NAME, list(INPUTS), list(OUTPUTS), constants + list(graph.node),
                              list(program.model_proto.opset_import))
    fn.doc_string = ("cobra-edge's selective scan (export/scan.py: selective_scan over scan_chunked, chunk "
                     f"{chunk}) in standard operators; engines/kernels runs this node as one fused kernel")
    onnx.checker.check_function(fn)
    return fn.SerializeToString()


def uses_fused_scan(model) -> bool:
    """Whether an exported ``onnx_ir.Model`` calls ``cobra_edge.SelectiveScan``."""
    return any(node.domain == OP_DOMAIN and node.op_type == OP_NAME for node in model.graph)


def attach_portable_function(model, d_inner: int, d_state: int) -> None:
    """Add the portable body of ``cobra_edge.SelectiveScan`` to an exported ``onnx_ir.Model`` that calls it."""
    import onnx
    import onnx_ir as ir

    proto = onnx.FunctionProto()
    proto.ParseFromString(portable_function(d_inner, d_state))
    fn = ir.serde.deserialize_function(proto)
    model.functions[fn.identifier()] = fn
    model.opset_imports.setdefault(OP_DOMAIN, OP_VERSION)
