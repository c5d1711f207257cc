"""The selective-state recurrence of Mamba-1 (mamba_ssm's ``selective_scan``), in forms that must agree.

Glossary (mamba-minimal's symbols, paper names):
    b        batch (streams)                     l   sequence length (tokens)
    d_in     d_inner = expand * d_model          n   d_state
    x        the scan's input (after conv, SiLU) [b, l, d_in]
    dt       the input-dependent step, softplus  [b, l, d_in]
    A        -exp(A_log)                          [d_in, n]
    B, C     input / output projections          [b, l, n]
    dA       exp(dt * A), the discretised A      [b, l, d_in, n]
    dBx      dt * B * x, the discretised input   [b, l, d_in, n]
    h        the SSM state                       [b, d_in, n]   (float32 always)

    h_t = dA_t * h_{t-1} + dBx_t
    y_t = h_t @ C_t                              [b, d_in]

The recurrence forms take ``(x, dt, A, B, C, h)`` and return ``(y [b, l, d_in], h_l)``:
- ``scan_ref``: the readable Python loop over tokens (the reference);
- ``scan_hop``: ``torch._higher_order_ops.scan`` over tokens, which torch's dynamo ONNX exporter turns into one
  ONNX ``Scan`` node with a dynamic length; dA and dBx are materialised for all l tokens first;
- ``scan_chunked``: a ``Scan`` over chunks of ``chunk`` tokens. Each iteration discretises its chunk in bulk
  (dA, dBx for ``chunk`` tokens: small, cache-resident tensors instead of [l, d_in, n] ones), then runs the
  recurrence unrolled over the chunk, then one batched matmul for the chunk's outputs. Inside the scan the
  state is laid out [b, n, d_in]: ONNX Runtime's broadcasting Mul is fast along long contiguous spans and slow
  along spans of 16 (the discretisation took 300 us per chunk in the [d_in, n] layout, 65 us in this one). Padding to a multiple
  of ``chunk`` uses dt = 0, where dA = 1 and dBx = 0: the state passes through padding unchanged.
  Chosen by measurement (bench/scan_forms.py): ONNX Runtime pays a fixed cost per Scan iteration, and per
  body op, that the per-token Scan pays l times.

``selective_scan`` wraps a recurrence form into mamba_ssm's ``selective_scan_fn`` contract (delta_softplus=True,
with a state in and out): dt arrives before its bias and softplus, the skip ``D x`` and the gate ``silu(z)`` are
applied to the output. That contract is what the prefill graph calls once per layer, as one node
``cobra_edge.SelectiveScan`` (export/fused.py): the fused CPU kernel of engines/kernels runs it, or, where that
kernel is not registered, the node's portable function body (``selective_scan`` over ``scan_chunked``).
``selective_step`` is the same contract for one token without the token axis (the decode step's
``cobra_edge.SelectiveStep``, run by the same kernel).
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

ScanFn = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]
SelectiveScanFn = Callable[..., tuple[Tensor, Tensor]]  # selective_scan's (and selective_step's) contract
DEFAULT_CHUNK = 16


def softplus(x: Tensor) -> Tensor:
    """log(1 + e^x) as relu(x) + log1p(e^-|x|): exact in float32 and exported as vectorised Relu/Exp/Log
    (ONNX Runtime's own Softplus kernel, with torch's threshold as a Where, cost 4x more in a mamba-130m prefill)."""
    return F.relu(x) + torch.log1p(torch.exp(-x.abs()))


def discretize(x: Tensor, dt: Tensor, A: Tensor, B: Tensor) -> tuple[Tensor, Tensor]:
    """x, dt [..., d_in], A [d_in, n], B [..., n] -> dA, dBx [..., d_in, n] (zero-order hold for A, Euler for B)."""
    dA = torch.exp(dt.unsqueeze(-1) * A)
    dBx = (dt * x).unsqueeze(-1) * B.unsqueeze(-2)
    return dA, dBx


def scan_ref(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """Reference loop. x, dt [b, l, d_in]; A [d_in, n]; B, C [b, l, n]; h [b, d_in, n] -> (y [b, l, d_in], h)."""
    (b, l, d_in) = x.shape
    dA, dBx = discretize(x, dt, A, B)
    ys = []
    for t in range(l):
        h = dA[:, t] * h + dBx[:, t]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, t]))
    return torch.stack(ys, dim=1), h


def scan_hop(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """Same contract as ``scan_ref``: one ONNX ``Scan`` over tokens whose body is a multiply-add and a matmul."""
    from torch._higher_order_ops.scan import scan

    # time-major before discretising: transposing x, dt, B, C is 16x cheaper than transposing dA, dBx
    dA, dBx = discretize(x.transpose(0, 1), dt.transpose(0, 1), A, B.transpose(0, 1))  # [l, b, d_in, n]

    def body(h_prev: Tensor, xs: tuple[Tensor, Tensor, Tensor]):
        dA_t, dBx_t, C_t = xs  # [b, d_in, n], [b, d_in, n], [b, n]
        h_t = dA_t * h_prev + dBx_t
        y_t = torch.matmul(h_t, C_t.unsqueeze(-1)).squeeze(-1)  # [b, d_in]
        return h_t, y_t

    # scan runs over dim 0: time-major inputs; the carry must be laid out as the body returns it
    h = h.clone(memory_format=torch.contiguous_format)
    h_last, ys = scan(body, h, (dA, dBx, C.transpose(0, 1)))
    return ys.transpose(0, 1), h_last


def _chunk_body(AT: Tensor, chunk: int, h: Tensor, xs: tuple[Tensor, Tensor, Tensor, Tensor]):
    """One chunk, the state laid out [b, n, d_in] (d_state-major, so every broadcast runs along contiguous spans
    of d_in values, not of n = 16). AT [n, d_in]; h [b, n, d_in]; x_c, dt_c [chunk, b, d_in]; B_c, C_c
    [chunk, b, n] -> (h, y_c [chunk, b, d_in])."""
    x_c, dt_c, B_c, C_c = xs
    dA = torch.exp(dt_c.unsqueeze(-2) * AT)  # [chunk, b, 1, d_in] * [n, d_in] -> [chunk, b, n, d_in]
    dBx = B_c.unsqueeze(-1) * (dt_c * x_c).unsqueeze(-2)  # [chunk, b, n, 1] * [chunk, b, 1, d_in]
    # split into [1, b, n, d_in] pieces and concatenate them back: no Squeeze/Unsqueeze per token, so the
    # unrolled recurrence is exactly one Mul and one Add per token
    dA_k, dBx_k = torch.split(dA, 1), torch.split(dBx, 1)
    h = h.unsqueeze(0)
    hs = []
    for k in range(chunk):
        h = dA_k[k] * h + dBx_k[k]
        hs.append(h)
    y_c = torch.matmul(C_c.unsqueeze(-2), torch.cat(hs)).squeeze(-2)  # [chunk, b, 1, n] @ [chunk, b, n, d_in]
    return h.squeeze(0), y_c


def scan_chunked(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, h: Tensor,
                 chunk: int = DEFAULT_CHUNK) -> tuple[Tensor, Tensor]:
    """Same contract as ``scan_ref``: one ONNX ``Scan`` over ceil(l / chunk) chunks (see the module docstring);
    the state is transposed to [b, n, d_in] for the scan and back at the end (once per layer)."""
    from torch._higher_order_ops.scan import scan

    (b, l, d_in) = x.shape
    pad = (-l) % chunk
    if pad:  # dt = 0 on padding: dA = 1, dBx = 0, the state passes through
        x, dt, B, C = (torch.nn.functional.pad(t, (0, 0, 0, pad)) for t in (x, dt, B, C))

    def chunks(t: Tensor) -> Tensor:  # [b, l + pad, f] -> [(l + pad) / chunk, chunk, b, f], time-major
        return t.transpose(0, 1).reshape(-1, chunk, b, t.shape[-1])

    h = h.transpose(1, 2).contiguous()
    h_last, ys = scan(partial(_chunk_body, A.t().contiguous(), chunk), h,
                      (chunks(x), chunks(dt), chunks(B), chunks(C)))
    y = ys.reshape(-1, b, d_in)[:l].transpose(0, 1)
    return y, h_last.transpose(1, 2)


def scan_train(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """Same contract as ``scan_ref``, for training where the kernel library is not built (export/train_scan.py
    runs the fused recurrence otherwise): the tokens are taken apart with one
    ``unbind`` instead of l ``select``s (whose backward writes a full-size zero gradient per token: O(l^2)), and
    the outputs are read from all states in one matmul."""
    dA, dBx = discretize(x, dt, A, B)
    hs = []
    for dA_t, dBx_t in zip(dA.unbind(1), dBx.unbind(1)):
        h = dA_t * h + dBx_t
        hs.append(h)
    y = torch.matmul(torch.stack(hs, dim=1), C.unsqueeze(-1)).squeeze(-1)  # [b, l, d_in, n] @ [b, l, n, 1]
    return y, h


SCANS: dict[str, ScanFn] = {"ref": scan_ref, "hop": scan_hop, "chunked": scan_chunked}


def selective_scan(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor, dt_bias: Tensor,
                   h: Tensor, scan: ScanFn = scan_ref) -> tuple[Tensor, Tensor]:
    """mamba_ssm's ``selective_scan_fn(x, dt, A, B, C, D, z, dt_bias, delta_softplus=True)`` from state ``h``.

    x, dt, z [b, l, d_in] (dt before its bias and softplus); A [d_in, n]; B, C [b, l, n]; D, dt_bias [d_in];
    h [b, d_in, n]; all float32 -> y [b, l, d_in] = (C_t . h_t + D x_t) * silu(z_t), and h after the l tokens.
    """
    y, h = scan(x, softplus(dt + dt_bias), A, B, C, h)
    return (y + x * D) * F.silu(z), h


def selective_step(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor, z: Tensor, dt_bias: Tensor,
                   h: Tensor) -> tuple[Tensor, Tensor]:
    """``selective_scan`` for one token (mamba_ssm's ``selective_state_update``), without the token axis.

    x, dt, z [b, d_in]; A [d_in, n]; B, C [b, n]; D, dt_bias [d_in]; h [b, d_in, n]; float32
    -> y [b, d_in], h after the token.
    """
    delta = softplus(dt + dt_bias)
    dA, dBx = discretize(x, delta, A, B)  # [b, d_in, n]
    h = dA * h + dBx
    y = torch.matmul(h, C.unsqueeze(-1)).squeeze(-1) + x * D
    return y * F.silu(z), h
