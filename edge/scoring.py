"""Answer-set scoring for closed questions ("is the gripper holding the cup?" -> "yes" | "no").

After the image and the prompt, each candidate answer's log-probability is the sum over its tokens of the
model's log-softmax; all candidates advance together, one batched step-graph call per answer token (candidates
that are shorter leave the batch). The best candidate and its probability within the set come back, with every
candidate's log-probability. EOS is not scored: "yes" is scored as the start of the answer, as
lm-evaluation-harness scores multiple choice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .batch import Request, _failed, _start_row, _visual_embeds, prefill_rows
from .errors import NonFiniteError, StreamError, log_unexpected
from .profile import FrameProfile

if TYPE_CHECKING:
    from .decode import Stepper
    from .runtime import Stream


@dataclass
class Choice:
    stream: str
    answer: str  # the best candidate
    probability: float  # its probability within the candidate set
    log_probs: dict[str, float]  # every candidate's sequence log-probability
    profile: FrameProfile


def log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def choose(stream: "Stream", frame_bgr, prompt: str, answers: list[str], boxes=None,
           timestamp: float | None = None) -> Choice:
    rt = stream.runtime
    req = Request(stream, frame_bgr, prompt, 0, timestamp, boxes=boxes, write_state=False)
    try:
        if (not isinstance(answers, (list, tuple)) or not answers or len(set(answers)) != len(answers)
                or not all(isinstance(a, str) and a for a in answers)):
            raise StreamError(f"stream {stream.name!r}: answers must be a list of distinct non-empty strings, got {answers!r}")
        ids = [rt.tokenizer.encode_text(a, f"stream {stream.name!r}: answer {a!r}") for a in answers]
        empty = [a for a, i in zip(answers, ids) if len(i) == 0]
        if empty:
            raise StreamError(f"stream {stream.name!r}: answers {empty} encode to no tokens")
        row = _start_row(req, rt.takes_boxes)
        _visual_embeds(rt, [row])
        logits, _, states = prefill_rows(rt, [row])
        conv, ssm = (np.array(a) for a in states.to_host())  # scoring steps through the host (host arrays)
        t0 = time.perf_counter()
        scores = _score(rt.stepper, logits[0], conv, ssm, ids)
        row.profile.decode += (time.perf_counter() - t0) * 1e3
        row.profile.new_tokens = max(len(i) for i in ids)
        if not np.isfinite(scores).all():  # a NaN log-probability would pass as an answer with probability NaN
            bad = [a for a, sc in zip(answers, scores) if not np.isfinite(sc)]
            raise NonFiniteError(f"stream {stream.name!r}: the model's log-probabilities of {bad} are NaN or "
                                 "infinite; no answer")
    except Exception as e:
        log_unexpected(e, f"stream {stream.name!r}: answer-set scoring")
        raise _failed(req, e, "answer-set scoring") from e
    stream.stats.answered += 1
    best = int(np.argmax(scores))
    p = np.exp(scores - scores.max())
    return Choice(stream.name, answers[best], float(p[best] / p.sum()),
                  {a: float(s) for a, s in zip(answers, scores)}, row.timer.finish())


def _score(step: "Stepper", first_logits: np.ndarray, conv: np.ndarray, ssm: np.ndarray, ids: list[np.ndarray]) -> np.ndarray:
    """Sequence log-probabilities [n] of n candidates from one post-prompt state ([1, ...] arrays)."""
    n = len(ids)
    scores = np.array([log_softmax(first_logits)[i[0]] for i in ids])
    conv, ssm = np.repeat(conv, n, axis=0), np.repeat(ssm, n, axis=0)
    for j in range(1, max(len(i) for i in ids)):
        rows = np.array([a for a in range(n) if len(ids[a]) > j])
        tokens = np.array([ids[a][j - 1] for a in rows], dtype=np.int64)
        out = step.run(tokens, conv[rows], ssm[rows])
        conv[rows], ssm[rows] = out["conv_state_out"], out["ssm_state_out"]
        logp = log_softmax(out["logits"])
        scores[rows] += logp[np.arange(len(rows)), [ids[a][j] for a in rows]]
    return scores
