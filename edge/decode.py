"""Greedy decoding from stream states, one step-graph call per token for all streams still answering."""

from __future__ import annotations

import numpy as np

from engines.base import Engine


def greedy_decode(step: Engine, first_logits: np.ndarray, conv: np.ndarray, ssm: np.ndarray,
                  max_new_tokens: list[int], eos_token_id: int, feed_last: list[bool]
                  ) -> tuple[list[list[int]], np.ndarray, np.ndarray]:
    """Greedy decoding of n streams in one batch.

    first_logits [n, V] from the prefill; conv/ssm [n, ...] the states after the prefill (updated in place).
    Returns (token ids per stream without EOS, conv, ssm): each row's state after the last token fed to the
    model. A row's first token comes from the prefill's logits; each later token costs one step, batched over
    the rows still answering; a row leaves the batch at EOS or at its ``max_new_tokens``.
    feed_last[r]: also feed row r's final answer token, so its state holds the whole answer (state that
    carries over to the next frame); otherwise that step is skipped, since nothing reads its output.
    """
    n = first_logits.shape[0]
    ids: list[list[int]] = [[] for _ in range(n)]
    logits = first_logits
    rows = np.arange(n)  # the rows `logits` belongs to
    for i in range(max(max_new_tokens, default=0)):
        feed = []
        for r, row_logits in zip(rows, logits):
            if i >= max_new_tokens[r]:
                continue
            token = int(np.argmax(row_logits))
            if token == eos_token_id:
                continue
            ids[r].append(token)
            if i + 1 < max_new_tokens[r] or feed_last[r]:
                feed.append(r)
        if not feed:
            break
        rows = np.asarray(feed)
        tokens = np.array([ids[r][-1] for r in rows], dtype=np.int64)
        whole = len(rows) == n
        out = step.run({"input_ids": tokens, "conv_state": conv if whole else conv[rows],
                        "ssm_state": ssm if whole else ssm[rows]})
        logits = out["logits"]
        conv[rows], ssm[rows] = out["conv_state_out"], out["ssm_state_out"]
    return ids, conv, ssm
