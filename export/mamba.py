"""Mamba-1 language model in PyTorch: the reference every exported graph is tested against.

Weight names follow mamba_ssm (``backbone.embedding``, ``backbone.layers.N.norm``,
``backbone.layers.N.mixer.{in_proj,conv1d,x_proj,dt_proj,A_log,D,out_proj}``, ``backbone.norm_f``,
tied ``lm_head``); Hugging Face's ``MambaForCausalLM`` differs only in ``backbone.embeddings``.

Glossary (shapes in every docstring use these):
    b        batch (streams)            l        tokens in the chunk
    d        d_model                    d_in     d_inner = expand * d_model
    n        d_state                    k        d_conv (conv state keeps k - 1 columns)
    r        dt_rank                    v        vocab_padded

State of one layer, as mamba_ssm's ``allocate_inference_cache``:
    conv_state [b, d_in, k - 1]   the last k - 1 inputs of the causal depthwise conv (model dtype)
    ssm_state  [b, d_in, n]       h, always float32
The model-level state stacks layers after the batch: [b, n_layer, d_in, k - 1] and [b, n_layer, d_in, n].
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import MambaConfig
from .scan import SelectiveScanFn, selective_scan, selective_step

ConvStepFn = Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]  # causal_conv_step's contract
ConvFn = Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]  # causal_conv's contract


def causal_conv_step(x: Tensor, conv_state: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """The conv of one token (mamba_ssm's ``causal_conv1d_update`` with SiLU). x [b, d_in], conv_state
    [b, d_in, k-1] (the previous inputs, oldest first), weight [d_in, k], bias [d_in] -> y [b, d_in] =
    silu(window . weight + bias) with window = [conv_state, x], and conv_state_out = window without its oldest."""
    window = torch.cat([conv_state, x.unsqueeze(-1)], dim=-1)  # [b, d_in, k]
    return F.silu((window * weight).sum(-1) + bias), window[:, :, 1:]


def causal_conv(x: Tensor, conv_state: Tensor, weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """The conv of a chunk of l tokens continuing from a state (mamba_ssm's ``causal_conv1d_fn`` with an initial
    state, and SiLU). x [b, l, d_in] (token-major, as in_proj writes it), conv_state [b, d_in, k-1], weight
    [d_in, k], bias [d_in] -> y [b, l, d_in] = silu(conv over [conv_state, x]), conv_state_out [b, d_in, k-1] =
    the last k-1 inputs of [conv_state, x]. For l = 1 it equals ``causal_conv_step``."""
    k = weight.shape[1]
    x_cat = torch.cat([conv_state, x.transpose(1, 2)], dim=2)  # [b, d_in, k-1+l]
    y = F.conv1d(x_cat, weight.unsqueeze(1), bias, groups=x.shape[-1])  # [b, d_in, l]
    return F.silu(y).transpose(1, 2), x_cat[:, :, x_cat.shape[2] - (k - 1):]


class RMSNorm(nn.Module):
    """y = x / sqrt(mean(x^2) + eps) * weight, computed in float32."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: Tensor) -> Tensor:
        x32 = x.float()
        # a division, not a multiplication by rsqrt: ONNX Runtime fuses this pattern (Pow, ReduceMean, Add, Sqrt,
        # Div, Mul) into one SimplifiedLayerNormalization, 7 operators fewer per norm in the decode step
        y = x32 / torch.sqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (y * self.weight.float()).to(x.dtype)


def _matmul_t(x: Tensor, weight: Tensor) -> Tensor:
    """x [..., in] @ weight[out, in]^T without a bias, leading axes flattened like ``linear``."""
    y = F.linear(x.reshape(-1, x.shape[-1]), weight)
    return y.reshape(*x.shape[:-1], y.shape[-1])


def linear(x: Tensor, layer: nn.Linear) -> Tensor:
    """``layer(x)`` with the leading axes flattened: the exporter writes one Gemm that reads the weight as stored
    ([out, in], transB) for any number of leading axes (a linear over [b, l, d] would become a MatMul with a
    transposed copy of the weight). So the prefill, the step and the embedding graph read the same tensors, and an
    artifact stores each weight once (docs/architecture.md, "Weights")."""
    if x.dim() == 2:
        return layer(x)
    y = F.linear(x.reshape(-1, x.shape[-1]), layer.weight, layer.bias)
    return y.reshape(*x.shape[:-1], y.shape[-1])


class MambaMixer(nn.Module):
    """One Mamba-1 mixer (``mamba_ssm.modules.mamba_simple.Mamba``), as pure functions of the state."""

    def __init__(self, cfg: MambaConfig):
        super().__init__()
        self.cfg = cfg
        d, d_in, n, k, r = cfg.d_model, cfg.d_inner, cfg.d_state, cfg.d_conv, cfg.dt_rank
        self.in_proj = nn.Linear(d, 2 * d_in, bias=cfg.bias)
        self.conv1d = nn.Conv1d(d_in, d_in, kernel_size=k, groups=d_in, padding=k - 1, bias=cfg.conv_bias)
        self.x_proj = nn.Linear(d_in, r + 2 * n, bias=False)
        self.dt_proj = nn.Linear(r, d_in, bias=True)
        A = torch.arange(1, n + 1, dtype=torch.float32).repeat(d_in, 1)  # S4D-real init
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(d_in))
        self.out_proj = nn.Linear(d_in, d, bias=cfg.bias)

    def _ssm_inputs(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """x [..., d_in] -> dt [..., d_in] (dt_proj's matmul alone: its bias and the softplus are applied inside
        the scan, as mamba_ssm does), B [..., n], C [..., n] (float32), A [d_in, n]."""
        cfg = self.cfg
        dt, B, C = torch.split(linear(x, self.x_proj), [cfg.dt_rank, cfg.d_state, cfg.d_state], dim=-1)
        dt = _matmul_t(dt, self.dt_proj.weight).float()
        A = -torch.exp(self.A_log.float())
        return dt, B.float(), C.float(), A

    def forward(
        self, hidden: Tensor, conv_state: Tensor, ssm_state: Tensor, scan: SelectiveScanFn = selective_scan,
        conv: ConvFn | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """A chunk of l tokens continuing from a state.

        hidden [b, l, d], conv_state [b, d_in, k-1], ssm_state [b, d_in, n] (float32)
        -> out [b, l, d], conv_state_out, ssm_state_out (same shapes).
        All projections run over the l tokens at once; only ``scan`` (export/scan.py's selective_scan contract:
        softplus of dt, recurrence, skip and gate, in float32) is sequential. ``conv``: ``causal_conv``'s contract
        in float32 (the fused op of the exported prefill graph); by default the conv in the model's dtype.
        """
        # 1. Gated MLP's input projection
        x, z = linear(hidden, self.in_proj).chunk(2, dim=-1)  # [b, l, d_in] each
        # 2. Causal depthwise convolution, continuing from the previous k-1 inputs; SiLU
        weight = self.conv1d.weight[:, 0]
        bias = self.conv1d.bias if self.conv1d.bias is not None else torch.zeros_like(self.D)
        if conv is None:
            x, conv_state_out = causal_conv(x, conv_state, weight, bias)
        else:
            x, conv_state_out = conv(x.float(), conv_state.float(), weight.float(), bias.float())
            x, conv_state_out = x.to(hidden.dtype), conv_state_out.to(conv_state.dtype)
        # 3. Input-dependent step sizes and projections; discretised inside the scan: dA = exp(dt A), dBx = dt B x
        dt, B, C, A = self._ssm_inputs(x)
        # 4. Selective scan (the only sequential part), skip connection and gate, in float32
        y, ssm_state_out = scan(x.float(), dt, A, B, C, self.D.float(), z.float(), self.dt_proj.bias.float(),
                                ssm_state.float())
        # 5. Output projection
        return linear(y.to(hidden.dtype), self.out_proj), conv_state_out, ssm_state_out

    def step(self, hidden: Tensor, conv_state: Tensor, ssm_state: Tensor, update: SelectiveScanFn = selective_step,
             conv: ConvStepFn = causal_conv_step) -> tuple[Tensor, Tensor, Tensor]:
        """One token (mamba_ssm ``Mamba.step``). hidden [b, d] -> out [b, d], conv_state_out, ssm_state_out.
        ``update``: export/scan.py's selective_step contract; ``conv``: causal_conv_step's (the fused ops in the
        exported step graph). Both run in float32."""
        # 1. Input projection
        x, z = self.in_proj(hidden).chunk(2, dim=-1)  # [b, d_in]
        # 2. Conv: the window is the k-1 stored inputs then x; SiLU
        bias = self.conv1d.bias if self.conv1d.bias is not None else torch.zeros(self.cfg.d_inner)
        x, conv_state_out = conv(x.float(), conv_state.float(), self.conv1d.weight[:, 0].float(), bias.float())
        x, conv_state_out = x.to(hidden.dtype), conv_state_out.to(conv_state.dtype)
        # 3. Step sizes and projections; discretise, update h, read out, skip and gate (float32)
        dt, B, C, A = self._ssm_inputs(x)
        y, h = update(x.float(), dt, A, B, C, self.D.float(), z.float(), self.dt_proj.bias.float(), ssm_state.float())
        # 4. Output projection
        return self.out_proj(y.to(hidden.dtype)), conv_state_out, h


class MambaBlock(nn.Module):
    """Pre-norm residual block: x + mixer(norm(x))."""

    def __init__(self, cfg: MambaConfig):
        super().__init__()
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mixer = MambaMixer(cfg)


class MambaBackbone(nn.Module):
    def __init__(self, cfg: MambaConfig):
        super().__init__()
        self.embedding = nn.Embedding(cfg.vocab_padded, cfg.d_model)
        self.layers = nn.ModuleList(MambaBlock(cfg) for _ in range(cfg.n_layer))
        self.norm_f = RMSNorm(cfg.d_model, cfg.norm_eps)


class MambaLM(nn.Module):
    """Mamba-1 LM with a tied head. All methods are pure: the caller owns the state tensors."""

    def __init__(self, cfg: MambaConfig):
        super().__init__()
        self.cfg = cfg
        self.backbone = MambaBackbone(cfg)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_padded, bias=False)
        self.lm_head.weight = self.backbone.embedding.weight

    def empty_state(self, batch: int, dtype: torch.dtype | None = None) -> tuple[Tensor, Tensor]:
        """Zero state: conv [b, n_layer, d_in, k-1] (model dtype), ssm [b, n_layer, d_in, n] float32."""
        c = self.cfg
        dtype = dtype or self.backbone.embedding.weight.dtype
        conv = torch.zeros(batch, c.n_layer, c.d_inner, c.d_conv - 1, dtype=dtype)
        ssm = torch.zeros(batch, c.n_layer, c.d_inner, c.d_state, dtype=torch.float32)
        return conv, ssm

    def embed(self, input_ids: Tensor) -> Tensor:
        """input_ids [b, l] int64 -> inputs_embeds [b, l, d]."""
        return self.backbone.embedding(input_ids)

    def forward_embeds(
        self, inputs_embeds: Tensor, conv_state: Tensor, ssm_state: Tensor, scan: SelectiveScanFn = selective_scan,
        last_only: bool = False, conv: ConvFn | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Prefill. inputs_embeds [b, l, d], stacked states -> logits [b, l, v] ([b, 1, v] with ``last_only``:
        the LM head on the last position only, all a prefill needs), conv_state_out, ssm_state_out."""
        h, conv_out, ssm_out = self.residual(inputs_embeds, conv_state, ssm_state, scan=scan, conv=conv)
        if last_only:
            h = h[:, -1:]
        logits = linear(self.backbone.norm_f(h), self.lm_head)
        return logits, conv_out, ssm_out

    def forward_hidden(
        self, inputs_embeds: Tensor, conv_state: Tensor, ssm_state: Tensor, scan: SelectiveScanFn = selective_scan,
        conv: ConvFn | None = None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Prefill that also returns the final normed hidden states (the LM head's input, what action heads read):
        -> logits [b, v] (last position), hidden [b, l, d], conv_state_out, ssm_state_out."""
        h, conv_out, ssm_out = self.residual(inputs_embeds, conv_state, ssm_state, scan=scan, conv=conv)
        hidden = self.backbone.norm_f(h)
        return linear(hidden[:, -1], self.lm_head), hidden, conv_out, ssm_out

    def residual(self, inputs_embeds: Tensor, conv_state: Tensor, ssm_state: Tensor,
                 scan: SelectiveScanFn = selective_scan, conv: ConvFn | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """The layers without the final norm: -> residual stream [b, l, d], conv_state_out, ssm_state_out."""
        h = inputs_embeds
        convs, ssms = [], []
        for i, layer in enumerate(self.backbone.layers):
            out, c, s = layer.mixer(layer.norm(h), conv_state[:, i], ssm_state[:, i], scan=scan, conv=conv)
            h = h + out
            convs.append(c)
            ssms.append(s)
        return h, torch.stack(convs, dim=1), torch.stack(ssms, dim=1)

    def step(self, input_ids: Tensor, conv_state: Tensor, ssm_state: Tensor, update: SelectiveScanFn = selective_step,
             conv: ConvStepFn = causal_conv_step) -> tuple[Tensor, Tensor, Tensor]:
        """One token per stream. input_ids [b] int64 -> logits [b, v], conv_state_out, ssm_state_out."""
        h = self.backbone.embedding(input_ids)
        convs, ssms = [], []
        for i, layer in enumerate(self.backbone.layers):
            out, c, s = layer.mixer.step(layer.norm(h), conv_state[:, i], ssm_state[:, i], update=update, conv=conv)
            h = h + out
            convs.append(c)
            ssms.append(s)
        logits = self.lm_head(self.backbone.norm_f(h))
        return logits, torch.stack(convs, dim=1), torch.stack(ssms, dim=1)


def init_mamba_weights_(model: MambaLM, seed: int = 0) -> MambaLM:
    """Random weights close to mamba_ssm's init (dt in [1e-3, 1e-1], S4D-real A, out_proj scaled by
    1/sqrt(n_layer)) with fan-in scaled projections, so that a random model's answers depend on its input
    rather than copying the last token through the tied head. Deterministic for a seed."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.cfg
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("A_log") or name.endswith(".D") or "norm" in name:
                continue
            if name.endswith("dt_proj.bias"):
                dt = torch.exp(torch.rand(p.shape, generator=g) * (torch.log(torch.tensor(0.1)) - torch.log(torch.tensor(1e-3))) + torch.log(torch.tensor(1e-3)))
                p.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
            elif name.endswith("dt_proj.weight"):
                std = cfg.dt_rank ** -0.5
                p.copy_((torch.rand(p.shape, generator=g) * 2 - 1) * std)
            elif name.endswith("embedding.weight"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
            elif p.ndim >= 2:  # fan-in scaled, so the mixers (not the embedding) dominate the residual stream
                p.copy_(torch.randn(p.shape, generator=g) * p[0].numel() ** -0.5)
            else:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        # mamba_ssm rescales out_proj by 1/sqrt(n_layer) (prenorm residual scaling)
        for layer in model.backbone.layers:
            layer.mixer.out_proj.weight.mul_(1.0 / (cfg.n_layer ** 0.5))
    return model
