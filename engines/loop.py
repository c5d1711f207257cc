"""A graph run again and again with some outputs fed back as the next run's inputs (the decode loop).

``Loop`` is what greedy decoding needs from a backend: the carried tensors (the Mamba state) stay where the
backend keeps them between runs, only the small per-run inputs (token ids) go in and only the outputs asked for
(the argmax token ids) come out. A backend offers a fast one through ``Engine.open_loop``; ``HostLoop`` is the
plain version over ``Engine.run`` that every backend gets, and the reference the fast ones are tested against.

    carry   {output name: input name}, e.g. {"conv_state_out": "conv_state", "ssm_state_out": "ssm_state"}
    state   {input name: array [b, ...]}: the carried inputs of the first run
    fetch   output names copied to the host after every run
"""

from __future__ import annotations

from typing import Mapping, Protocol, Sequence

import numpy as np

from .base import Engine, EngineInputError


class Loop(Protocol):
    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One run: ``feeds`` are the inputs that are not carried; returns the ``fetch`` outputs on the host."""
        ...

    def carried(self) -> dict[str, np.ndarray]:
        """The carried inputs of the next run (the current state), copied to the host: {input name: [b, ...]}."""
        ...

    def keep_rows(self, rows: Sequence[int]) -> None:
        """Keep only these batch rows of the carried state (rows leave a decode batch at EOS)."""
        ...


def check_loop(engine: Engine, carry: Mapping[str, str], state: Mapping[str, np.ndarray], fetch: Sequence[str]) -> None:
    """Names must exist in the graph and every carried input must be given."""
    for out, inp in carry.items():
        if out not in engine.outputs or inp not in engine.inputs:
            raise EngineInputError(f"graph {engine.name!r}: cannot carry output {out!r} into input {inp!r}; "
                                   f"outputs {sorted(engine.outputs)}, inputs {sorted(engine.inputs)}")
    if set(state) != set(carry.values()):
        raise EngineInputError(f"graph {engine.name!r}: the loop's state must give {sorted(carry.values())}, "
                               f"got {sorted(state)}")
    unknown = [f for f in fetch if f not in engine.outputs]
    if unknown:
        raise EngineInputError(f"graph {engine.name!r}: cannot fetch {unknown}; outputs {sorted(engine.outputs)}")


class HostLoop:
    """``Loop`` over ``engine.run``: every run passes the state through numpy (the reference form)."""

    def __init__(self, engine: Engine, carry: Mapping[str, str], state: Mapping[str, np.ndarray],
                 fetch: Sequence[str]):
        check_loop(engine, carry, state, fetch)
        self.engine, self.carry, self.fetch = engine, dict(carry), list(fetch)
        self.state = {k: np.ascontiguousarray(v) for k, v in state.items()}

    def run(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = self.engine.run({**feeds, **self.state})
        self.state = {inp: out[o] for o, inp in self.carry.items()}
        return {f: out[f] for f in self.fetch}

    def carried(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self.state.items()}

    def keep_rows(self, rows: Sequence[int]) -> None:
        idx = np.asarray(rows, dtype=np.int64)
        self.state = {k: np.ascontiguousarray(v[idx]) for k, v in self.state.items()}


def open_loop(engine: Engine, carry: Mapping[str, str], state: Mapping[str, np.ndarray], fetch: Sequence[str],
              bound: bool = True) -> Loop:
    """The backend's own loop when it has one (``engine.open_loop``) and ``bound``; else a ``HostLoop``."""
    if bound and hasattr(engine, "open_loop"):
        return engine.open_loop(carry, state, fetch)
    return HostLoop(engine, carry, state, fetch)
