"""The state pool on the sessions' device: ``StatePool``'s slots with the slab allocated as OrtValues where the graphs
run (GPU memory with a CUDA or TensorRT provider), so a stream's state never crosses to the host between frames.

    conv  OrtValue [max_streams, n_layer, d_inner, d_conv - 1]   (spec.conv_dtype)
    ssm   OrtValue [max_streams, n_layer, d_inner, d_state]      float32

A batch's states are gathered from the slots on the device (``start_states``: edge/batch_state.py ``DeviceStates``),
the graphs read and write them bound in place, and each row's final state is copied back into its slot on the device
(``store``); only the finiteness check's flags (one per row) and the token ids come to the host. What must go through
the host does, said where: ``snapshot`` / ``restore`` / ``view`` / ``write`` (forks, answer-set scoring, inspection)
copy one slab each way.

The CPU runs the same code with CPU OrtValues (``Runtime.load(..., device_state=True)``): how the tests prove the path
without a GPU.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .batch_state import DeviceStates
from .state import StatePool, StateSnapshot, StateSpec


class DeviceStatePool(StatePool):
    on_device = True

    def __init__(self, spec: StateSpec, max_streams: int, memory):
        if max_streams < 1:
            raise ValueError(f"max_streams must be >= 1, got {max_streams}")
        self.spec = spec
        self.memory = memory
        self.conv = memory.zeros((max_streams, *spec.conv_shape), spec.conv_dtype)
        self.ssm = memory.zeros((max_streams, *spec.ssm_shape), spec.ssm_dtype)
        self._free = list(range(max_streams - 1, -1, -1))

    @property
    def capacity(self) -> int:
        return self.conv.shape()[0]

    def reset(self, slot: int) -> None:
        self._check(slot)
        self.memory.zero_rows(self.conv, [slot])
        self.memory.zero_rows(self.ssm, [slot])

    def read(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        """Host copies of one slab [n_layer, ...] (copied from the device)."""
        self._check(slot)
        return self.memory.to_host(self.conv, [slot])[0], self.memory.to_host(self.ssm, [slot])[0]

    def view(self, slot: int) -> tuple[np.ndarray, np.ndarray]:
        """[1, ...] host copies of one slab (not views: the slab is on the device)."""
        conv, ssm = self.read(slot)
        return conv[None], ssm[None]

    def write(self, slot: int, conv: np.ndarray, ssm: np.ndarray) -> None:
        """Store a host state [1, ...] (or unbatched) into a slab (copied to the device)."""
        self._check(slot)
        self.memory.write_rows(self.conv, [slot], np.asarray(conv).reshape(1, *self.spec.conv_shape))
        self.memory.write_rows(self.ssm, [slot], np.asarray(ssm).reshape(1, *self.spec.ssm_shape))

    def snapshot(self, slot: int) -> StateSnapshot:
        conv, ssm = self.read(slot)
        return StateSnapshot(conv, ssm, self.spec)

    def slot_finite(self, slot: int) -> bool:
        self._check(slot)
        return bool(self.memory.rows_finite(self.conv, [slot])[0] and self.memory.rows_finite(self.ssm, [slot])[0])

    def start_states(self, starts: Sequence) -> DeviceStates:
        """A batch's start states on the device: per row None (zeros), a slot (its state, gathered on the device) or
        a (conv, ssm) host pair (a fork's snapshot, copied up)."""
        n = len(starts)
        states = DeviceStates(self.memory, self.memory.zeros((n, *self.spec.conv_shape), self.spec.conv_dtype),
                              self.memory.zeros((n, *self.spec.ssm_shape), self.spec.ssm_dtype))
        slots = [(j, s) for j, s in enumerate(starts) if isinstance(s, (int, np.integer))]
        if slots:
            rows, src = zip(*slots)
            self.memory.copy_rows(states.conv, rows, self.conv, src)
            self.memory.copy_rows(states.ssm, rows, self.ssm, src)
        for j, s in enumerate(starts):
            if isinstance(s, tuple):
                self.memory.write_rows(states.conv, [j], np.asarray(s[0]).reshape(1, *self.spec.conv_shape))
                self.memory.write_rows(states.ssm, [j], np.asarray(s[1]).reshape(1, *self.spec.ssm_shape))
        return states

    def empty_states(self, n: int) -> DeviceStates:
        return DeviceStates(self.memory, self.memory.empty((n, *self.spec.conv_shape), self.spec.conv_dtype),
                            self.memory.empty((n, *self.spec.ssm_shape), self.spec.ssm_dtype))

    def store(self, slot: int, states: DeviceStates, row: int) -> None:
        """The slot takes row ``row`` of a batch's states, on the device."""
        self._check(slot)
        self.memory.copy_rows(self.conv, [slot], states.conv, [row])
        self.memory.copy_rows(self.ssm, [slot], states.ssm, [row])
