"""Dense supervision of the visual tokens (training only; nothing here is exported): each token of a grid
projector is read by a linear head for what its cell shows (edge/world/dense.py), and the vision side can be
pretrained on that alone before the question-answering run, as Cobra's encoders come pretrained.

    dense = DenseHead(d_model, pairs=21, motions=5)
    record = pretrain_vision(model, dense, steps=1500, seed=0)     # encoders + projector, no LM
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from edge.world.dense import PAIRS
from edge.world.spec import MOTIONS

from .model import CobraModel


class DenseHead(torch.nn.Module):
    """Training only (never exported): a linear read of each visual token of a grid projector -> per (colour,
    kind) pair: is it visible in the token's cell, is its centre there, and where in the cell (edge/world/dense.py).
    Its loss pulls the binding of colour to shape and place into the visual tokens, where the LM can read it."""

    def __init__(self, d_model: int, pairs: int = len(PAIRS), motions: int = len(MOTIONS), recall: bool = False,
                 motion_summary: bool = False):
        super().__init__()
        self.pairs, self.motions = pairs, motions
        self.proj = torch.nn.Linear(d_model, 4 * pairs)
        self.motion = torch.nn.Linear(d_model, pairs * motions)
        self.summary = torch.nn.Sequential(torch.nn.Linear(d_model, 256), torch.nn.GELU(),
                                           torch.nn.Linear(256, pairs + 3 * pairs + 4 + 1))
        # made last and only when asked for, so that runs without it draw the same initial weights as before
        self.recall = torch.nn.Linear(d_model, 4 * pairs) if recall else None
        self.motion_summary = torch.nn.Linear(d_model, pairs * motions) if motion_summary else None

    def recall_loss(self, hidden: torch.Tensor, labels: list) -> torch.Tensor:
        """hidden [n, grid^2, d_model]: the LM's final normed hidden states at later frames' visual tokens; labels:
        the frame before's cell labels (n (present, centre, offset)) -> ``loss``'s terms through the recall head:
        each token recalls what its own cell showed one frame earlier. A state that keeps the last frame cell by
        cell is what comparing two frames needs; this asks for the keeping alone, not yet the comparison."""
        if self.recall is None:
            raise ValueError("DenseHead(recall=True) is needed for the recall term")
        return self.loss(hidden, labels, self.recall)

    def summary_loss(self, hidden: torch.Tensor, labels: list) -> torch.Tensor:
        """hidden [n, d_model]: the LM's final normed hidden state at a still scene's last visual token; labels:
        n edge/world/dense.py scene_summary -> the loss of reading the whole scene there (which pairs, each one's
        third, how many, the path): what the state must hold before any question comes."""
        p = self.pairs
        out = self.summary(hidden)
        pairs = torch.from_numpy(np.stack([lab[0] for lab in labels]))
        thirds = torch.from_numpy(np.stack([lab[1] for lab in labels]))
        count = torch.tensor([lab[2] for lab in labels])
        path = torch.tensor([lab[3] for lab in labels], dtype=torch.float32)
        return (F.binary_cross_entropy_with_logits(out[:, :p], pairs)
                + F.cross_entropy(out[:, p:4 * p].unflatten(-1, (p, 3)).flatten(0, 1), thirds.flatten(), ignore_index=-1)
                + F.cross_entropy(out[:, 4 * p:4 * p + 4], count)
                + F.binary_cross_entropy_with_logits(out[:, -1], path))

    def motion_loss(self, hidden: torch.Tensor, labels: np.ndarray) -> torch.Tensor:
        """hidden [n, grid^2, d_model]: the LM's final normed hidden states at later frames' visual tokens;
        labels int64 [n, grid^2, P] (edge/world/dense.py motion_labels, -1: no label) -> cross-entropy of the way
        each shape centred in a cell moves. Only a state that carries the earlier frames can answer it."""
        out = self.motion(hidden).unflatten(-1, (self.pairs, self.motions))
        target = torch.from_numpy(labels)
        return F.cross_entropy(out.flatten(0, 2), target.flatten(), ignore_index=-1)

    def motion_summary_loss(self, hidden: torch.Tensor, labels: np.ndarray) -> torch.Tensor:
        """hidden [n, d_model]: the LM's final normed hidden state at a later frame's last visual token; labels
        int64 [n, grid^2, P] (that frame's motion_labels) -> cross-entropy of the way every pair in view moves, all
        read at the one place where the whole frame has been seen and a question about any shape comes next
        (a pair centred in two cells with two different moves is not asked)."""
        if self.motion_summary is None:
            raise ValueError("DenseHead(motion_summary=True) is needed for the motion summary term")
        target = torch.from_numpy(pair_motions(labels))
        out = self.motion_summary(hidden).unflatten(-1, (self.pairs, self.motions))
        return F.cross_entropy(out.flatten(0, 1), target.flatten(), ignore_index=-1)

    def loss(self, tokens: torch.Tensor, labels: list, proj: torch.nn.Module | None = None) -> torch.Tensor:
        """tokens [n, grid^2, d_model], labels: n (present [grid^2, P], centre [grid^2, P], offset [grid^2, P, 2]);
        ``proj``: the linear read (default the visual tokens' own, ``self.proj``)."""
        present, centre, offset = (torch.from_numpy(np.stack([lab[i] for lab in labels])) for i in range(3))
        out = (proj or self.proj)(tokens)
        p = self.pairs
        l_present = F.binary_cross_entropy_with_logits(out[..., :p], present)
        l_centre = F.binary_cross_entropy_with_logits(out[..., p:2 * p], centre, pos_weight=torch.tensor(4.0))
        xy = torch.sigmoid(out[..., 2 * p:].unflatten(-1, (p, 2)))
        l_offset = (((xy - offset) ** 2).sum(-1) * centre).sum() / centre.sum().clamp(min=1)
        return l_present + l_centre + 4 * l_offset


def pair_motions(labels: np.ndarray) -> np.ndarray:
    """labels int64 [n, grid^2, P] (motion_labels, -1: none) -> int64 [n, P]: each pair's move where the cells
    that hold its centre agree on one, else -1."""
    high, low = labels.max(axis=1), np.where(labels < 0, np.iinfo(np.int64).max, labels).min(axis=1)
    return np.where((high >= 0) & (high == low), high, -1)


def dense_grid(model: CobraModel) -> int:
    """The side of the projector's square token grid (16 tokens -> 4), 0 when its tokens are not a grid (object
    tokens) or not square."""
    if model.cfg.object_tokens:
        return 0
    with torch.no_grad():
        t = model.visual_embeds(torch.zeros(1, model.cfg.image_size, model.cfg.image_size, 3, dtype=torch.uint8))
    g = math.isqrt(t.shape[1])
    return g if g * g == t.shape[1] else 0


PRETRAIN_OFFSET = 10**9  # pretraining batches are drawn at steps from here: never the QA run's scenes


def load_dense_head(dense: DenseHead, path) -> list[str]:
    """Load a saved DenseHead (export/train.py dense_head_path) into ``dense``: the parts both have (an optional
    head the file lacks stays as it is); a part of another shape is an error naming it. -> the keys loaded."""
    from .checkpoints import read_safetensors

    _, tensors = read_safetensors(path, "dense head")
    own = dense.state_dict()
    wrong = [k for k, v in tensors.items() if k in own and own[k].shape != v.shape]
    if wrong:
        raise ValueError(f"{path}: {wrong[0]} is {tuple(tensors[wrong[0]].shape)}, this model's dense head needs "
                         f"{tuple(own[wrong[0]].shape)}")
    loaded = sorted(k for k in tensors if k in own)
    dense.load_state_dict({**own, **{k: tensors[k] for k in loaded}})
    return loaded


def held_out_read(model: CobraModel, dense: DenseHead, grid: int, seed: int, scenes: int):
    """Held-out still scenes drawn from ``seed`` (with their cell labels) and the dense head's read of their
    visual tokens: -> (the Batch, logits [scenes, grid^2, 4 * pairs])."""
    from .train_data import DataRecipe, draw_batch

    batch = draw_batch(DataRecipe(scenes=scenes, questions=1, sequences=0, image_size=model.cfg.image_size,
                                  dense_grid=grid), seed, -2, motion=False)
    with torch.no_grad():
        return batch, dense.proj(model.visual_embeds(torch.from_numpy(batch.pixels)))


def dense_metrics(model: CobraModel, dense: DenseHead, grid: int, seed: int = 998, scenes: int = 200) -> dict:
    """Held-out scenes (``seed``, never trained on) -> what the visual tokens say through the dense head:
    ``pairs_exact`` (the scene's set of (colour, kind) pairs read exactly: a pair is seen where its best cell's
    probability passes 0.5), ``colour_of_kind`` (for every kind that occurs once, the colour whose pair scores
    highest is its colour: the colour family's question, read off the tokens) and ``centre_cell`` (each shape's
    centre cell is its pair's best cell for the centre output)."""
    batch, out = held_out_read(model, dense, grid, seed, scenes)
    p = dense.pairs
    present = torch.sigmoid(out[..., :p]).amax(1).numpy()  # [n, P]
    centre = out[..., p:2 * p].argmax(1).numpy()  # [n, P] best cell per pair
    exact, colour_right, colour_total, centre_right, centre_total = 0, 0, 0, 0, 0
    kinds = sorted({k for _, k in PAIRS})
    for i, (pres, cent, _) in enumerate(batch.dense):
        truth = pres.max(0) > 0
        exact += bool(np.array_equal(present[i] > 0.5, truth))
        for kind in kinds:
            idx = [j for j, (_, k) in enumerate(PAIRS) if k == kind]
            there = [j for j in idx if truth[j]]
            if len(there) == 1:
                colour_total += 1
                colour_right += idx[int(np.argmax(present[i][idx]))] == there[0]
        for j in np.flatnonzero(cent.max(0)):
            centre_total += 1
            centre_right += int(np.argmax(cent[:, j])) == centre[i, j]
    return {"scenes": scenes, "seed": seed, "pairs_exact": exact / scenes,
            "colour_of_kind": colour_right / max(colour_total, 1), "centre_cell": centre_right / max(centre_total, 1)}


def mirrored(pixels: np.ndarray, labels: list, grid: int) -> tuple[np.ndarray, list]:
    """The batch mirrored left to right, its cell labels with it: circles, squares and upright triangles are
    symmetric about their vertical axis, so the mirrored scene's labels are exact. pixels [n, S, S, 3]."""
    order = np.arange(grid * grid).reshape(grid, grid)[:, ::-1].reshape(-1)  # cell (r, c) <- (r, grid - 1 - c)
    out = []
    for present, centre, offset in labels:
        off = offset[order].copy()
        off[..., 0] = np.where(centre[order] > 0, 1.0 - off[..., 0], 0.0)
        out.append((present[order], centre[order], off))
    return np.ascontiguousarray(pixels[:, :, ::-1]), out


def pretrain_vision(model: CobraModel, dense: DenseHead, grid: int, steps: int, seed: int = 0, scenes: int = 64,
                    lr: float = 2e-3, warmup: int = 50, workers: bool = True, log_every: int = 100,
                    repeats: int = 1, say: Callable[[str], None] = print) -> dict:
    """Train the vision encoders, the projector and the dense head on cell labels alone (no LM, no questions):
    ``steps`` AdamW steps of ``scenes`` still scenes, cosine decay to 5 %; each drawn batch serves ``repeats``
    steps, every other one mirrored (drawing scenes at camera sizes is what bounds a step). -> a record (steps,
    minutes, losses, held-out dense_metrics before and after)."""
    from .train_data import BatchStream, DataRecipe

    params = list(model.vision.parameters()) + list(model.projector.parameters()) + list(dense.proj.parameters())
    optim = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    recipe = DataRecipe(scenes=scenes, questions=1, sequences=0, image_size=model.cfg.image_size, dense_grid=grid)
    before = dense_metrics(model, dense, grid)
    batches = -(-steps // repeats)
    stream = BatchStream(recipe, seed, range(PRETRAIN_OFFSET, PRETRAIN_OFFSET + batches), workers=workers,
                         motion_from=PRETRAIN_OFFSET + batches)
    t0, losses, window = time.perf_counter(), [], []
    model.train()

    def steps_of(stream):
        for b, batch in stream:
            for r in range(repeats):
                yield (b - PRETRAIN_OFFSET) * repeats + r, (
                    (batch.pixels, batch.dense) if r % 2 == 0 else mirrored(batch.pixels, batch.dense, grid))

    try:
        for k, (pixels, labels) in steps_of(stream):
            if k >= steps:
                break
            scale = (k + 1) / warmup if k < warmup else 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * k / steps))
            for g in optim.param_groups:
                g["lr"] = lr * scale
            loss = dense.loss(model.visual_embeds(torch.from_numpy(pixels)), labels)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
            window.append(float(loss.detach()))
            if (k + 1) % log_every == 0 or k + 1 == steps:
                losses.append(float(np.mean(window)))
                window = []
                say(f"vision pretraining {k + 1:>5}/{steps}  dense loss {losses[-1]:.4f}  "
                    f"{(time.perf_counter() - t0) / 60:.1f} min")
    finally:
        stream.close()
    model.eval()
    after = dense_metrics(model, dense, grid)
    say(f"vision pretraining: held-out colour of a kind read off the tokens {before['colour_of_kind']:.0%} -> "
        f"{after['colour_of_kind']:.0%}, pair sets exact {before['pairs_exact']:.0%} -> {after['pairs_exact']:.0%}, "
        f"centre cells {before['centre_cell']:.0%} -> {after['centre_cell']:.0%}")
    return {"steps": steps, "scenes": scenes, "repeats": repeats, "lr": lr, "minutes": round((time.perf_counter() - t0) / 60, 2),
            "loss": losses, "before": before, "after": after}
