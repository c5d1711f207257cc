"""The five exported graphs as small modules, and their tensor contract (names, dtypes, symbolic shapes).

This file is the one place the contract of docs/architecture.md is written on the export side; the
manifest's graph entries are generated from ``GraphDef``s, and the runtime checks engines against them.

Symbols: B streams in a batch (dynamic), L tokens in a prefill chunk (dynamic); everything else fixed.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

import torch
from torch import Tensor, nn

from .fused import fused_causal_conv, fused_conv_step, fused_selective_scan, fused_selective_step
from .mamba import causal_conv_step
from .model import CobraModel
from .scan import SCANS, SelectiveScanFn, selective_scan, selective_step

PREFILL_SCAN = "fused"


def prefill_scan(form: str) -> SelectiveScanFn:
    """The selective scan a prefill graph is exported with: "fused" (one ``cobra_edge.SelectiveScan`` node per
    layer carrying its portable body, export/fused.py) or a recurrence form of export/scan.py written out in
    standard operators ("chunked", "chunked:8", "hop")."""
    if form == "fused":
        return fused_selective_scan
    base, _, chunk = form.partition(":")
    if base not in SCANS:
        raise ValueError(f"unknown prefill scan {form!r}: 'fused' or one of {sorted(SCANS)} (chunked:N for N-token chunks)")
    scan = partial(SCANS[base], chunk=int(chunk)) if chunk else SCANS[base]
    return partial(selective_scan, scan=scan)


class VisionGraph(nn.Module):
    def __init__(self, model: CobraModel):
        super().__init__()
        self.vision = model.vision

    def forward(self, pixels: Tensor):
        """pixels uint8 [B, H, W, 3] RGB -> patch_features [B, P, d_vision] (channel-fused encoders), or
        features_<name> [B, P_e, c_e] per encoder (multi-scale projectors)."""
        return self.vision(pixels)


class ProjectorGraph(nn.Module):
    def __init__(self, model: CobraModel):
        super().__init__()
        self.projector = model.projector

    def forward(self, *inputs: Tensor):
        """The vision graph's outputs (+ boxes [B, K, 4], box_mask [B, K] for object tokens)
        -> visual_embeds [B, T, d_model] (+ object_embeds [B, K, d_model])."""
        return self.projector(*inputs)


class EmbedGraph(nn.Module):
    def __init__(self, model: CobraModel):
        super().__init__()
        self.llm = model.llm

    def forward(self, input_ids: Tensor) -> Tensor:
        """input_ids int64 [B, L] -> inputs_embeds [B, L, d_model]."""
        return self.llm.embed(input_ids)


def _io_dtype(model: CobraModel) -> torch.dtype:
    """The dtype of the graphs' float tensors by contract (the model config's), whatever the weights' precision."""
    return getattr(torch, model.cfg.dtype)


class PrefillGraph(nn.Module):
    """Projections over all L tokens at once; the selective scan as one node per layer (``scan``: see
    ``prefill_scan``; "fused" by default, chosen by measurement: bench/scan_forms.py).

    Precision variants (export/precision.py) build this from a copy of the model in another dtype: inputs are cast
    to the weights' dtype and outputs back, so every variant keeps the same tensor contract."""

    def __init__(self, model: CobraModel, scan: str = PREFILL_SCAN, hidden: bool = False):
        super().__init__()
        self.llm = model.llm
        self.hidden = hidden  # also output hidden_states [B, L, d_model] (artifacts with action heads)
        self.scan = prefill_scan(scan)
        # the conv as one cobra_edge.CausalConv node with the fused scan (fast at any l: the runtime also decodes
        # with this graph at l = 1); the standard-operator scan forms keep the plain conv
        self.conv = fused_causal_conv if scan == "fused" else None
        self.io_dtype = _io_dtype(model)

    def forward(self, inputs_embeds: Tensor, conv_state: Tensor, ssm_state: Tensor):
        """inputs_embeds [B, L, d_model], conv_state [B, n_layer, d_inner, d_conv-1],
        ssm_state [B, n_layer, d_inner, d_state] f32 -> logits [B, V] f32 (last position), next_token [B] int64
        (argmax of logits), states out; with ``hidden``, then hidden_states [B, L, d_model] f32 (the final normed
        hidden state at every position: what action heads read)."""
        w = self.llm.backbone.embedding.weight.dtype
        if self.hidden:
            logits, hidden, conv, ssm = self.llm.forward_hidden(inputs_embeds.to(w), conv_state.to(w), ssm_state,
                                                                scan=self.scan, conv=self.conv)
            logits = logits.float()
            return logits, torch.argmax(logits, dim=-1), conv.to(self.io_dtype), ssm, hidden.float()
        logits, conv, ssm = self.llm.forward_embeds(inputs_embeds.to(w), conv_state.to(w), ssm_state, scan=self.scan,
                                                    last_only=True, conv=self.conv)
        logits = logits[:, -1].float()
        return logits, torch.argmax(logits, dim=-1), conv.to(self.io_dtype), ssm


class StepGraph(nn.Module):
    """One token per stream; each layer's conv and state update as ``cobra_edge.ConvStep`` and
    ``cobra_edge.SelectiveStep`` nodes (export/fused.py) with ``fused=True`` (the default), or written out in
    standard operators."""

    def __init__(self, model: CobraModel, fused: bool = True):
        super().__init__()
        self.llm = model.llm
        self.io_dtype = _io_dtype(model)
        self.update = fused_selective_step if fused else selective_step
        self.conv = fused_conv_step if fused else causal_conv_step

    def forward(self, input_ids: Tensor, conv_state: Tensor, ssm_state: Tensor):
        """input_ids int64 [B] -> logits [B, V] f32, next_token [B] int64 (argmax of logits: greedy decoding
        reads B ids instead of [B, V] logits), conv_state_out, ssm_state_out."""
        w = self.llm.backbone.embedding.weight.dtype
        logits, conv, ssm = self.llm.step(input_ids, conv_state.to(w), ssm_state, update=self.update, conv=self.conv)
        logits = logits.float()
        return logits, torch.argmax(logits, dim=-1), conv.to(self.io_dtype), ssm


class HeadGraph(nn.Module):
    """One action head (export/heads.py) as a graph of its own."""

    def __init__(self, head: nn.Module):
        super().__init__()
        self.head = head

    def forward(self, hidden: Tensor) -> Tensor:
        """hidden [B, P, d_model] f32 (the prefill's hidden_states at the head's positions) -> outputs [B, n] f32."""
        return self.head(hidden)


def head_graph_name(head_name: str) -> str:
    return f"head_{head_name}"


@dataclass(frozen=True)
class TensorDef:
    name: str
    dtype: str  # numpy dtype name
    shape: tuple  # ints and the symbols "B", "L", "K"


@dataclass(frozen=True)
class GraphDef:
    name: str
    module: Callable[[CobraModel], nn.Module]
    inputs: tuple[TensorDef, ...]
    outputs: tuple[TensorDef, ...]
    reference: Callable | None = None  # the PyTorch function parity is checked against, when not the model's own

    @property
    def file(self) -> str:
        return f"{self.name}.onnx"


def graph_defs(model: CobraModel, heads: tuple = ()) -> list[GraphDef]:
    """The graphs this model exports, in pipeline order (vision and projector only when it has vision); with
    ``heads`` (export/heads.py ActionHeads), the prefill graph also outputs hidden_states and each head is a graph
    ``head_<name>`` after the others."""
    cfg = model.cfg
    lm = cfg.lm
    dt = cfg.dtype
    conv = (lm.n_layer, lm.d_inner, lm.d_conv - 1)
    ssm = (lm.n_layer, lm.d_inner, lm.d_state)
    V, D = lm.vocab_padded, lm.d_model
    states_in = (TensorDef("conv_state", dt, ("B", *conv)), TensorDef("ssm_state", "float32", ("B", *ssm)))
    states_out = (TensorDef("conv_state_out", dt, ("B", *conv)), TensorDef("ssm_state_out", "float32", ("B", *ssm)))
    defs = []
    if cfg.has_vision:
        S, T = cfg.image_size, cfg.num_visual_tokens
        if cfg.multi_scale:
            features = tuple(TensorDef(f"features_{v.name}", dt, ("B", v.num_patches, v.width)) for v in cfg.vision)
        else:
            features = (TensorDef("patch_features", dt, ("B", cfg.vision[0].num_patches, cfg.d_vision)),)
        proj_in, proj_out = features, (TensorDef("visual_embeds", dt, ("B", T, D)),)
        if cfg.object_tokens:
            proj_in += (TensorDef("boxes", "float32", ("B", "K", 4)), TensorDef("box_mask", "bool", ("B", "K")))
            proj_out += (TensorDef("object_embeds", dt, ("B", "K", D)),)
        defs += [
            GraphDef("vision", VisionGraph, (TensorDef("pixels", "uint8", ("B", S, S, 3)),), features),
            GraphDef("projector", ProjectorGraph, proj_in, proj_out),
        ]
    defs += [
        GraphDef("embed", EmbedGraph, (TensorDef("input_ids", "int64", ("B", "L")),),
                 (TensorDef("inputs_embeds", dt, ("B", "L", D)),)),
        GraphDef("prefill", partial(PrefillGraph, hidden=True) if heads else PrefillGraph,
                 (TensorDef("inputs_embeds", dt, ("B", "L", D)), *states_in),
                 (TensorDef("logits", "float32", ("B", V)), TensorDef("next_token", "int64", ("B",)), *states_out,
                  *((TensorDef("hidden_states", "float32", ("B", "L", D)),) if heads else ()))),
        GraphDef("step", StepGraph, (TensorDef("input_ids", "int64", ("B",)), *states_in),
                 (TensorDef("logits", "float32", ("B", V)), TensorDef("next_token", "int64", ("B",)), *states_out)),
    ]
    for head in heads:
        c = head.cfg
        defs.append(GraphDef(head_graph_name(c.name), lambda _model, h=head: HeadGraph(h),
                             (TensorDef("hidden", "float32", ("B", c.n_hidden, D)),),
                             (TensorDef("outputs", "float32", ("B", len(c.outputs))),), reference=head))
    return defs


def example_inputs(gdef: GraphDef, batch: int, length: int, seed: int = 0) -> tuple[Tensor, ...]:
    """Random inputs of the declared shapes (B = batch, L = K = length) for export tracing and parity checks.
    Boxes are normalised (x1, y1, x2, y2), some reaching past the frame's border; masks keep ~70 %."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for t in gdef.inputs:
        shape = tuple(batch if s == "B" else length if s in ("L", "K") else s for s in t.shape)
        if t.name == "boxes":
            corner = torch.rand(*shape[:-1], 2, generator=g) * 1.1 - 0.1
            size = 0.05 + 0.6 * torch.rand(*shape[:-1], 2, generator=g)
            out.append(torch.cat([corner, corner + size], dim=-1))
        elif t.dtype == "bool":
            out.append(torch.rand(shape, generator=g) < 0.7)
        elif t.dtype == "uint8":
            out.append(torch.randint(0, 256, shape, generator=g, dtype=torch.uint8))
        elif t.dtype == "int64":
            vocab = 256  # ids inside every vocabulary we build
            out.append(torch.randint(0, vocab, shape, generator=g, dtype=torch.int64))
        else:
            scale = 1.0 if t.name != "inputs_embeds" else 0.5
            out.append(torch.randn(shape, generator=g, dtype=getattr(torch, t.dtype)) * scale)
    return tuple(out)
