"""The Mamba states of one batch's rows while the batch runs (prefill, then decode), where the runtime keeps them:

    HostStates     numpy arrays (the CPU runtime; the reference form)
    DeviceStates   OrtValues on the sessions' device (engines/memory.py): with a GPU provider no state crosses to the
                   host between the pool, the prefill, the decode steps and the pool again

Both have the same methods, so edge/batch.py and edge/decode.py run one code path for either:

    prefill(engine, x)     run the prefill graph from these states -> (host logits / next_token, the states after)
    place(at, group)       rows ``at`` of this batch take the rows of a group's states (one prefill per length)
    take(rows)             the carried inputs of a decode loop for these rows
    put(rows, loop)        these rows take the decode loop's current states
    finite()               bool [n]: the row's states hold no NaN or infinity
    to_host()              (conv, ssm) numpy copies

Shapes: conv [n, n_layer, d_inner, d_conv - 1], ssm [n, n_layer, d_inner, d_state] (edge/state.py).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .checks import finite_rows

STATE_IN = ("conv_state", "ssm_state")
STATE_OUT = ("conv_state_out", "ssm_state_out")
FETCH = ("logits", "next_token")


class HostStates:
    def __init__(self, conv: np.ndarray, ssm: np.ndarray):
        self.conv, self.ssm = conv, ssm

    @property
    def n(self) -> int:
        return self.conv.shape[0]

    def prefill(self, engine, x: np.ndarray) -> tuple[dict[str, np.ndarray], "HostStates"]:
        out = engine.run({"inputs_embeds": x, "conv_state": self.conv, "ssm_state": self.ssm})
        return out, HostStates(out["conv_state_out"], out["ssm_state_out"])

    def place(self, at: Sequence[int], group: "HostStates") -> None:
        self.conv[at], self.ssm[at] = group.conv, group.ssm

    def take(self, rows: Sequence[int]) -> dict[str, np.ndarray]:
        whole = len(rows) == self.n and list(rows) == list(range(self.n))
        return {"conv_state": self.conv if whole else self.conv[rows], "ssm_state": self.ssm if whole else self.ssm[rows]}

    def put(self, rows: Sequence[int], loop) -> None:
        state = loop.carried()
        self.conv[rows], self.ssm[rows] = state["conv_state"], state["ssm_state"]

    def finite(self) -> np.ndarray:
        return finite_rows(self.conv, self.ssm)

    def to_host(self) -> tuple[np.ndarray, np.ndarray]:
        return self.conv, self.ssm


class DeviceStates:
    """conv, ssm: OrtValues [n, ...] on ``memory``'s device."""

    def __init__(self, memory, conv, ssm):
        self.memory, self.conv, self.ssm = memory, conv, ssm

    @property
    def n(self) -> int:
        return self.conv.shape()[0]

    def prefill(self, engine, x: np.ndarray) -> tuple[dict[str, np.ndarray], "DeviceStates"]:
        if engine.device != self.memory.device:
            raise ValueError(f"graph {engine.name!r} runs on {engine.device}, the states live on {self.memory.device}")
        after = [self.memory.empty(v.shape(), _dtype(v)) for v in (self.conv, self.ssm)]
        out = engine.run_bound({"inputs_embeds": x}, dict(zip(STATE_IN, (self.conv, self.ssm))),
                               dict(zip(STATE_OUT, after)),
                               (*FETCH, *(k for k in ("hidden_states",) if k in engine.outputs)))
        return out, DeviceStates(self.memory, *after)

    def place(self, at: Sequence[int], group: "DeviceStates") -> None:
        self.memory.copy_rows(self.conv, at, group.conv, range(group.n))
        self.memory.copy_rows(self.ssm, at, group.ssm, range(group.n))

    def take(self, rows: Sequence[int]) -> dict:
        return {"conv_state": self.memory.gather(self.conv, rows), "ssm_state": self.memory.gather(self.ssm, rows)}

    def put(self, rows: Sequence[int], loop) -> None:
        values = loop.carried_values()  # an OrtLoop on the same device: no host copy
        self.memory.copy_rows(self.conv, rows, values["conv_state"], range(len(rows)))
        self.memory.copy_rows(self.ssm, rows, values["ssm_state"], range(len(rows)))

    def finite(self) -> np.ndarray:
        return self.memory.rows_finite(self.conv) & self.memory.rows_finite(self.ssm)

    def to_host(self) -> tuple[np.ndarray, np.ndarray]:
        return self.memory.to_host(self.conv), self.memory.to_host(self.ssm)


def _dtype(v) -> str:
    return {"tensor(float)": "float32", "tensor(float16)": "float16"}[v.data_type()]
