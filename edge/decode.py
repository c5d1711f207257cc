"""Greedy decoding from a stream's state, one step-graph call per token."""

from __future__ import annotations

import numpy as np

from engines.base import Engine


def greedy_decode(step: Engine, first_logits: np.ndarray, conv: np.ndarray, ssm: np.ndarray,
                  max_new_tokens: int, eos_token_id: int, feed_last: bool = False
                  ) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Greedy decoding of one stream.

    first_logits [1, V] from the prefill; conv/ssm [1, ...] the state after the prefill.
    Returns (token ids without EOS, conv, ssm): the state after the last token fed to the model. The first
    token comes from the prefill's logits; each later token costs one step. Stops at EOS or max_new_tokens.
    feed_last: also feed the final answer token, so the state holds the whole answer (for state that
    carries over to the next frame); otherwise that step is skipped, since nothing reads its output.
    """
    ids: list[int] = []
    logits = first_logits
    for i in range(max_new_tokens):
        token = int(np.argmax(logits[0]))
        if token == eos_token_id:
            break
        ids.append(token)
        if i + 1 == max_new_tokens and not feed_last:
            break  # the answer is complete: no need to feed the last token
        out = step.run({"input_ids": np.array([token], dtype=np.int64), "conv_state": conv, "ssm_state": ssm})
        logits, conv, ssm = out["logits"], out["conv_state_out"], out["ssm_state_out"]
    return ids, conv, ssm
