"""The loss of one training step (export/train.py's module docstring says what a step sees): the still scenes'
questions in reset mode from their image's shared state, the motion items in continuous mode laid out exactly as
the runtime feeds them, and the training-only terms (dense labels, scene summaries, the early answer).

    loss, parts = step_loss(model, tokenizer, batch, motion_weight=2.0)     # parts: {"single": ..., ...}
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from .mamba import linear
from .model import CobraModel
from .train_scan import TRAIN_SCAN
from .train_data import Batch
from .train_dense import DenseHead


def visual_tokens(model: CobraModel, pixels: torch.Tensor, boxes: list) -> list[torch.Tensor]:
    """pixels uint8 [n, S, S, 3] -> n visual token tensors [T (+ k), d_model] (object tokens: one per box)."""
    if not model.cfg.object_tokens:
        return list(model.visual_embeds(pixels))
    out: list = [None] * len(pixels)
    by_k: dict[int, list[int]] = {}
    for i, b in enumerate(boxes):
        by_k.setdefault(len(b), []).append(i)
    for k, idx in by_k.items():
        b = torch.as_tensor(np.stack([boxes[i] for i in idx]).reshape(len(idx), k, 4))
        for i, v in zip(idx, model.visual_embeds(pixels[idx], b)):
            out[i] = v
    return out


def _encode(tokenizer, prompt: str, answer: str) -> tuple[list[int], list[int]]:
    """-> (templated prompt ids, answer ids + EOS)."""
    ids = tokenizer.encode_prompt(prompt).tolist()
    return ids, tokenizer.encode_text(answer).tolist() + [tokenizer.eos_token_id]


def _targets(length: int, spans: list[tuple[int, list[int], float]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets [length] (-100: no loss) and weights [length]: each span (position of the last prompt token, answer
    ids + EOS, weight): position p + j predicts answer[j]."""
    target = torch.full((length,), -100, dtype=torch.long)
    weight = torch.zeros(length)
    for p, ans, w in spans:
        target[p:p + len(ans)] = torch.tensor(ans)
        weight[p:p + len(ans)] = w
    return target, weight


def query_position(prompt_ids: list[int], question_mark: int) -> int:
    """The position of the question's last word (the token before its last '?'), in the templated prompt."""
    at = [i for i, t in enumerate(prompt_ids) if t == question_mark]
    if not at or at[-1] == 0:
        raise ValueError(f"templated prompt {prompt_ids} has no '?' after a word: every world question ends with one")
    return at[-1] - 1


class _tap:
    """``with _tap(module) as t``: t.out is the module's output from its one call inside the block (None when
    module is None: nothing tapped)."""

    def __init__(self, module: torch.nn.Module | None):
        self.module, self.out, self._handle = module, None, None

    def __enter__(self):
        if self.module is not None:
            self._handle = self.module.register_forward_hook(lambda _m, _i, out: setattr(self, "out", out))
        return self

    def __exit__(self, *exc):
        if self._handle is not None:
            self._handle.remove()
        return False


def step_loss(model: CobraModel, tokenizer, batch: Batch, motion_weight: float,
              dense: DenseHead | None = None, dense_weight: float = 0.0,
              summary_weight: float = 0.0, early_answer_weight: float = 0.0,
              tokens: torch.Tensor | None = None, recall_weight: float = 0.0,
              motion_summary_weight: float = 0.0, motion_layer: int | None = None) -> tuple[torch.Tensor, dict]:
    """The loss of one batch (see the module docstring) and its parts. ``early_answer_weight``: the still
    questions' answers (first token) are also predicted at the question's last word ("circle" in "What colour is
    the circle?"), through the same LM head. Those logits are otherwise free (prompts carry no loss); the term
    asks the layers to look the answer up in the image's state where the query is read, rather than only 9
    template tokens later. ``tokens`` [n_scenes, T, d_model]: visual tokens to use for the still scenes instead of
    the encoders' (a diagnostic: bench/lm_recall.py gives the LM the scenes' exact cell labels).
    ``recall_weight``: at a motion item's later frames, the LM's hidden state at each visual token recalls the cell
    labels of the frame before (DenseHead.recall_loss). ``motion_summary_weight``: at a motion item's later frames,
    the hidden state at the frame's last visual token gives every pair's move (DenseHead.motion_summary_loss).
    ``motion_layer`` K (1 .. n_layer - 1): the per-token motion labels are read at the input of LM layer K (its own
    norm applied) instead of at the final hidden state, so that the move is made explicit K layers in and the
    layers after it can keep it in their state until the question asks (None: the final hidden state)."""
    llm = model.llm
    if motion_layer is not None and not 1 <= motion_layer < len(llm.backbone.layers):
        raise ValueError(f"motion_layer {motion_layer}: the LM has {len(llm.backbone.layers)} layers; give 1 to "
                         f"{len(llm.backbone.layers) - 1} (the input of that layer), or None for the final state")
    losses, weights = [], []
    aux: dict[str, tuple[float, torch.Tensor]] = {}  # name -> (weight, loss) of the training-only heads
    # 1. still scenes: image prefix once, its state shared by the scene's questions
    vis = list(tokens) if tokens is not None else (
        visual_tokens(model, torch.from_numpy(batch.pixels), batch.boxes) if len(batch.pixels) else [])
    parts: dict[str, float] = {}
    if vis:
        n = len(vis)
        conv = [None] * n
        ssm = [None] * n
        last = [None] * n  # residual stream at each scene's last visual token
        by_len: dict[int, list[int]] = {}
        for i, v in enumerate(vis):
            by_len.setdefault(v.shape[0], []).append(i)
        for idx in by_len.values():
            resid, c, s = llm.residual(torch.stack([vis[i] for i in idx]), *llm.empty_state(len(idx)), scan=TRAIN_SCAN)
            for j, i in enumerate(idx):
                conv[i], ssm[i], last[i] = c[j], s[j], resid[j, -1]
        seqs = [_encode(tokenizer, p, a) for _, p, a in batch.qa]
        length = max(len(p) + len(a) - 1 for p, a in seqs)
        ids = torch.zeros(len(seqs), length, dtype=torch.long)
        tgt, wts = [], []
        for r, (p, a) in enumerate(seqs):
            row = p + a[:-1]  # EOS is predicted, never fed
            ids[r, :len(row)] = torch.tensor(row)
            t, w = _targets(length, [(len(p) - 1, a, 1.0)])
            tgt.append(t)
            wts.append(w)
        scene = [j for j, _, _ in batch.qa]
        logits, _, _ = llm.forward_embeds(llm.embed(ids), torch.stack([conv[j] for j in scene]),
                                          torch.stack([ssm[j] for j in scene]), scan=TRAIN_SCAN)
        losses.append(F.cross_entropy(logits.flatten(0, 1), torch.stack(tgt).flatten(), reduction="none",
                                      ignore_index=-100))
        weights.append(torch.stack(wts).flatten())
        if early_answer_weight > 0:
            mark = tokenizer.encode_text("?").tolist()[-1]
            at = torch.tensor([query_position(p, mark) for p, _ in seqs])
            aux["early_answer"] = (early_answer_weight, F.cross_entropy(logits[torch.arange(len(seqs)), at],
                                                                        torch.tensor([a[0] for _, a in seqs])))
        parts["single"] = float(((losses[0] * weights[0]).sum() / weights[0].sum()).detach())
    # 2. motion items: [image, prompt, answer] per frame, continuous
    if batch.seq_pixels:
        frames = torch.from_numpy(np.concatenate(batch.seq_pixels))
        fboxes = [b for bs in batch.seq_boxes for b in bs] if model.cfg.object_tokens else []
        fvis = visual_tokens(model, frames, fboxes)
        rows, spans_all, at, image_at = [], [], 0, []
        for r, qa in enumerate(batch.seq_qa):
            parts_, spans, pos = [], [], 0
            for k, (prompt, answer, family) in enumerate(qa):
                v = fvis[at]
                at += 1
                p, a = _encode(tokenizer, prompt, answer)
                tokens = torch.tensor(p + a[:-1])
                parts_ += [v, llm.embed(tokens[None])[0]]
                if k:
                    image_at.append((r, k, pos, v.shape[0]))
                pos += v.shape[0]
                spans.append((pos + len(p) - 1, a, motion_weight if family == "motion" else 1.0))
                pos += len(tokens)
            rows.append(torch.cat(parts_))
            spans_all.append(spans)
        length = max(r.shape[0] for r in rows)
        x = torch.stack([F.pad(r, (0, 0, 0, length - r.shape[0])) for r in rows])
        motion_aux = dense is not None and batch.seq_motion and dense_weight > 0
        tap = _tap(llm.backbone.layers[motion_layer].norm if motion_aux and motion_layer is not None else None)
        with tap:
            resid, _, _ = llm.residual(x, *llm.empty_state(len(rows)), scan=TRAIN_SCAN)
        hidden = llm.backbone.norm_f(resid)
        logits = linear(hidden, llm.lm_head)
        recall = dense is not None and batch.dense and recall_weight > 0
        summary_motion = dense is not None and batch.seq_motion and motion_summary_weight > 0
        if image_at and (motion_aux or summary_motion):  # each later frame's motion labels, once
            labels = np.stack([batch.seq_motion[r][k] for r, k, _, _ in image_at])
        if image_at and summary_motion:  # the LM at later frames' last visual token
            h_last = torch.stack([hidden[r, p + t - 1] for r, _, p, t in image_at])
            aux["motion_summary"] = (motion_summary_weight, dense.motion_summary_loss(h_last, labels))
        if image_at and (motion_aux or recall):  # the LM at later frames' visual tokens
            h_img = torch.stack([hidden[r, p:p + t] for r, _, p, t in image_at])
            if motion_aux:
                h_motion = h_img if tap.out is None else torch.stack([tap.out[r, p:p + t] for r, _, p, t in image_at])
                aux["dense_motion"] = (dense_weight, dense.motion_loss(h_motion, labels))
            if recall:  # batch.dense: the still scenes' labels, then every sequence's frames in order
                start = np.cumsum([0] + [len(qa) for qa in batch.seq_qa]) + len(batch.pixels)
                before = [batch.dense[start[r] + k - 1] for r, k, _, _ in image_at]
                aux["recall"] = (recall_weight, dense.recall_loss(h_img, before))
        tw = [_targets(length, s) for s in spans_all]
        l_seq = F.cross_entropy(logits.flatten(0, 1), torch.stack([t for t, _ in tw]).flatten(), reduction="none",
                                ignore_index=-100)
        w_seq = torch.stack([w for _, w in tw]).flatten()
        losses.append(l_seq)
        weights.append(w_seq)
        parts["sequence"] = float((l_seq * w_seq).sum().detach() / w_seq.sum())
    if not losses:
        raise ValueError("a training batch with no still scenes and no motion items (recipe scenes 0 before "
                         "motion_from?): nothing to learn from")
    loss = sum((l * w).sum() for l, w in zip(losses, weights)) / sum(w.sum() for w in weights)
    if dense is not None and batch.summary and summary_weight > 0:
        aux["summary"] = (summary_weight, dense.summary_loss(llm.backbone.norm_f(torch.stack(last)), batch.summary))
    if dense is not None and batch.dense and dense_weight > 0:
        aux["dense"] = (dense_weight, dense.loss(torch.stack(vis + (fvis if batch.seq_pixels else [])), batch.dense))
    for name, (w, term) in aux.items():  # the training-only heads' losses (export/train_dense.py)
        parts[name] = float(term.detach())
        loss = loss + w * term
    return loss, parts
