"""Greedy decoding from stream states, one step call per token for all streams still answering.

The state stays inside the backend between steps (``engines.loop``: IO binding on ONNX Runtime) and only the
graph's ``next_token`` (its argmax) comes back per step: [rows] int64, not [rows, V] logits.

A step runs the step graph, or the prefill graph at L = 1 fed the embed graph's embedding of the token
(``Stepper``): prefill and step graphs have the same state contract and outputs, so decoding with the prefill
graph needs one set of language-model weights in memory, where two sessions would each keep their own pre-packed
copy (docs/architecture.md, "Weights").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from engines.base import Engine
from engines.loop import open_loop

from .batch_state import HostStates

STATE_CARRY = {"conv_state_out": "conv_state", "ssm_state_out": "ssm_state"}


@dataclass(frozen=True)
class Stepper:
    """One decode step: ``engine`` is the step graph (fed ``input_ids`` [B]), or the prefill graph with ``embed``
    (fed ``inputs_embeds`` [B, 1, d_model] of the ids)."""

    engine: Engine
    embed: Engine | None = None

    def feeds(self, ids: np.ndarray) -> dict[str, np.ndarray]:
        """The per-step inputs for token ids [B] int64 (the state is carried separately)."""
        if self.embed is None:
            return {"input_ids": ids}
        return {"inputs_embeds": self.embed.run({"input_ids": ids.reshape(-1, 1)})["inputs_embeds"]}

    def run(self, ids: np.ndarray, conv: np.ndarray, ssm: np.ndarray) -> dict[str, np.ndarray]:
        """One step through numpy: logits, next_token, conv_state_out, ssm_state_out."""
        return self.engine.run({**self.feeds(ids), "conv_state": conv, "ssm_state": ssm})


def greedy_decode(step: Engine | Stepper, first_tokens: np.ndarray, conv: np.ndarray, ssm: np.ndarray,
                  max_new_tokens: list[int], eos_token_id: int, feed_last: list[bool], bound: bool = True
                  ) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """Greedy decoding of n streams in one batch, states as host arrays.

    first_tokens [n] int64: each row's first token (the prefill's ``next_token``); conv/ssm [n, ...] the states
    after the prefill (updated in place). Returns (token ids per stream without EOS, conv, ssm): each row's state
    after the last token fed to the model. See ``decode_states``."""
    states = HostStates(conv, ssm)
    ids = decode_states(step, first_tokens, states, max_new_tokens, eos_token_id, feed_last, bound)
    return ids, states.conv, states.ssm


def decode_states(step: Engine | Stepper, first_tokens: np.ndarray, states, max_new_tokens: list[int],
                  eos_token_id: int, feed_last: list[bool], bound: bool = True) -> list[list[int]]:
    """Greedy decoding of n streams in one batch from ``states`` (HostStates or DeviceStates, edge/batch_state.py:
    updated in place to each row's state after the last token fed to the model). Returns the token ids per stream
    without EOS.

    Each later token costs one step, batched over the rows still answering; a row leaves the batch at EOS or at its
    ``max_new_tokens``, its state put back into ``states`` and the loop's rows gathered (on the device, for
    DeviceStates). feed_last[r]: also feed row r's final answer token, so its state holds the whole answer (state
    that carries over to the next frame); otherwise that step is skipped, since nothing reads its output.
    ``bound=False`` passes the state through numpy every step (the reference the bound loop is tested against; host
    states only)."""
    stepper = step if isinstance(step, Stepper) else Stepper(step)
    n = len(first_tokens)
    ids: list[list[int]] = [[] for _ in range(n)]
    next_tokens = np.asarray(first_tokens, dtype=np.int64)
    rows = np.arange(n)  # the rows `next_tokens` and the loop's state belong to
    loop = None
    for i in range(max(max_new_tokens, default=0)):
        feed = []
        for r, token in zip(rows, next_tokens.tolist()):
            if i >= max_new_tokens[r] or token == eos_token_id:
                continue
            ids[r].append(token)
            if i + 1 < max_new_tokens[r] or feed_last[r]:
                feed.append(r)
        if loop is not None and len(feed) < len(rows):  # rows leave: save their state, keep the others
            states.put(rows, loop)
            if feed:
                loop.keep_rows(np.searchsorted(rows, feed))
        if not feed:
            return ids
        if loop is None:
            loop = open_loop(stepper.engine, STATE_CARRY, states.take(feed), fetch=("next_token",), bound=bound)
        rows = np.asarray(feed)
        next_tokens = loop.run(stepper.feeds(np.array([ids[r][-1] for r in rows], dtype=np.int64)))["next_token"]
    if loop is not None:
        states.put(rows, loop)
    return ids
