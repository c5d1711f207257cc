"""The selective-state recurrence of Mamba-1, in two forms that must agree.

Glossary (mamba-minimal's symbols, paper names):
    b        batch (streams)                     l   sequence length (tokens)
    d_in     d_inner = expand * d_model          n   d_state
    dA       exp(dt * A), the discretised A      [b, l, d_in, n]
    dBx      dt * B * x, the discretised input   [b, l, d_in, n]
    C        output projection of the state      [b, l, n]
    h        the SSM state                       [b, d_in, n]   (float32 always)

    h_t = dA_t * h_{t-1} + dBx_t
    y_t = h_t @ C_t                              [b, d_in]

``scan_ref`` is the readable Python loop (the reference). ``scan_hop`` is the same recurrence as
``torch._higher_order_ops.scan``, which torch's dynamo ONNX exporter turns into one ONNX ``Scan`` node
with a dynamic length: the projections around it run over all tokens at once, only this runs in order.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

ScanFn = Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor]]


def scan_ref(dA: Tensor, dBx: Tensor, C: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """Reference loop. dA, dBx: [b, l, d_in, n]; C: [b, l, n]; h: [b, d_in, n] -> (y [b, l, d_in], h)."""
    (b, l, d_in, n) = dA.shape
    ys = []
    for t in range(l):
        h = dA[:, t] * h + dBx[:, t]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, t]))
    return torch.stack(ys, dim=1), h


def scan_hop(dA: Tensor, dBx: Tensor, C: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """Same contract as ``scan_ref``; exports to one ONNX ``Scan`` whose body is a multiply-add and a matmul."""
    from torch._higher_order_ops.scan import scan

    def body(h_prev: Tensor, xs: tuple[Tensor, Tensor, Tensor]):
        dA_t, dBx_t, C_t = xs  # [b, d_in, n], [b, d_in, n], [b, n]
        h_t = dA_t * h_prev + dBx_t
        y_t = torch.matmul(h_t, C_t.unsqueeze(-1)).squeeze(-1)  # [b, d_in]
        return h_t, y_t

    # scan runs over dim 0: time-major inputs; the carry must be laid out as the body returns it
    h = h.clone(memory_format=torch.contiguous_format)
    h_last, ys = scan(body, h, (dA.transpose(0, 1), dBx.transpose(0, 1), C.transpose(0, 1)))
    return ys.transpose(0, 1), h_last


SCANS: dict[str, ScanFn] = {"ref": scan_ref, "hop": scan_hop}
