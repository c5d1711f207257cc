"""Training action heads on a frozen model (RoboMamba's recipe): the model's final hidden states at the heads'
positions are computed once per example (no gradient through the backbone), then each head is fitted to the
examples' exact values.

    views = head_examples(seed=0, n=48000)                 # edge/sim/examples.py: frames, prompts, truths
    heads, record = train_heads(model, tokenizer, views, target_heads(model.cfg.lm.d_model, 16))
    save_heads(heads, "tiny-heads.safetensors", record)

The loss is the mean squared error of each output in units of its range (so a bearing in [-1, 1] and a distance in
[0, 4] m weigh alike); the values a robot reads are the head's outputs, always inside their ranges.
"""

from __future__ import annotations

import math
import time
from typing import Callable

import numpy as np
import torch

from .heads import ActionHead, HeadConfig, HeadOutput
from .model import CobraModel
from .train_scan import TRAIN_SCAN


def target_heads(d_model: int, image_tokens: int, hidden: tuple[int, int] = (0, 0)) -> list[HeadConfig]:
    """The embedded model's heads for edge/sim's world: where the named target is (``target``: every visual token
    and the prompt's last token, concatenated, so it can tell where in the frame the named shape is) and whether the
    path ahead is blocked (``path``: the same positions, since "blocked" is a place in the frame too; RoboMamba's
    mean of the image's end and the last token misses most stops of a continuous stream whose state remembers
    earlier frames: docs/loop.md). ``hidden``: the MLPs' widths (HeadConfig's; (0, 0): d_model / 2, d_model / 4)."""
    return [
        HeadConfig("target", d_model, (
            HeadOutput("bearing", "1", -1.0, 1.0, "the target's direction over half the camera's field of view, "
                                                 "left negative"),
            HeadOutput("distance", "m", 0.0, 4.0, "the gap from the robot's edge to the target's"),
            HeadOutput("visible", "1", 0.0, 1.0, "the target is in view (1) or not (0)")),
            positions=("image", "last"), pool="concat", hidden=hidden, image_tokens=image_tokens),
        HeadConfig("path", d_model, (
            HeadOutput("blocked", "1", 0.0, 1.0, "a shape stands in the lower centre of the view (1): stop"),),
            positions=("image", "last"), pool="concat", hidden=hidden, image_tokens=image_tokens),
    ]


@torch.no_grad()
def hidden_states(model: CobraModel, tokenizer, frames: list[np.ndarray], prompts: list[str], batch: int = 64
                  ) -> dict[str, torch.Tensor]:
    """frames (BGR uint8, any size) and prompts -> the model's final normed hidden states of each example at every
    head position, laid out as the runtime feeds it (image tokens, then the templated prompt): {"image": [n, T,
    d_model], "image_end": [n, 1, d_model], "last": [n, 1, d_model]} float32."""
    from edge.preprocess import preprocess

    llm = model.llm
    scan = TRAIN_SCAN
    d, T = model.cfg.lm.d_model, model.cfg.num_visual_tokens
    image, last = torch.empty(len(frames), T, d), torch.empty(len(frames), 1, d)
    ids = [tokenizer.encode_prompt(p) for p in prompts]
    order = sorted(range(len(frames)), key=lambda i: len(ids[i]))  # equal prompt lengths share a batch
    for start in range(0, len(order), batch):
        chunk = order[start:start + batch]
        by_len: dict[int, list[int]] = {}
        for i in chunk:
            by_len.setdefault(len(ids[i]), []).append(i)
        for idx in by_len.values():
            pixels = torch.from_numpy(np.stack([preprocess(frames[i], model.cfg.image_size) for i in idx]))
            vis = model.visual_embeds(pixels)
            if vis.shape[1] != T:
                raise ValueError(f"hidden_states: the model gives {vis.shape[1]} frame tokens, not its "
                                 f"num_visual_tokens {T} (object tokens): heads here read fixed-size images only")
            x = torch.cat([vis, llm.embed(torch.from_numpy(np.stack([ids[i] for i in idx])))], dim=1)
            _, hidden, _, _ = llm.forward_hidden(x, *llm.empty_state(len(idx)), scan=scan)
            image[idx], last[idx] = hidden[:, :T], hidden[:, -1:]
    return {"image": image, "image_end": image[:, -1:], "last": last}


@torch.no_grad()
def hidden_states_continuous(model: CobraModel, tokenizer, episodes: list[list], batch: int = 32
                             ) -> dict[str, torch.Tensor]:
    """``hidden_states`` for continuous streams: each episode (a list of examples with one prompt, in order: edge/sim
    examples.py ``approach``) runs as one stream that is never reset, each frame's prefill (its image tokens, then
    the prompt) starting from the state the previous one left, as ``Stream.act`` in continuous mode does. -> the
    hidden states of every frame of every episode, episodes in order, in ``hidden_states``' layout."""
    from edge.preprocess import preprocess

    llm = model.llm
    scan = TRAIN_SCAN
    d, T = model.cfg.lm.d_model, model.cfg.num_visual_tokens
    first = np.cumsum([0] + [len(e) for e in episodes])
    image, last = torch.empty(int(first[-1]), T, d), torch.empty(int(first[-1]), 1, d)
    ids = [tokenizer.encode_prompt(e[0].prompt) for e in episodes]
    by_len: dict[int, list[int]] = {}
    for i in range(len(episodes)):
        by_len.setdefault(len(ids[i]), []).append(i)
    for group in by_len.values():
        for start in range(0, len(group), batch):
            idx = group[start:start + batch]
            conv, ssm = llm.empty_state(len(idx))
            prompt = llm.embed(torch.from_numpy(np.stack([ids[i] for i in idx])))
            for t in range(max(len(episodes[i]) for i in idx)):
                on = [k for k, i in enumerate(idx) if t < len(episodes[i])]  # episodes still running at frame t
                pixels = torch.from_numpy(np.stack([preprocess(episodes[idx[k]][t].frame, model.cfg.image_size)
                                                    for k in on]))
                x = torch.cat([model.visual_embeds(pixels), prompt[on]], dim=1)
                _, hidden, conv_out, ssm_out = llm.forward_hidden(x, conv[on], ssm[on], scan=scan)
                conv[on], ssm[on] = conv_out, ssm_out
                rows = [int(first[idx[k]]) + t for k in on]
                image[rows], last[rows] = hidden[:, :T], hidden[:, -1:]
    return {"image": image, "image_end": image[:, -1:], "last": last}


def at_positions(cfg: HeadConfig, hidden: dict[str, torch.Tensor]) -> torch.Tensor:
    """A head's input from ``hidden_states``: its positions' vectors in order, [n, P, d_model]."""
    return torch.cat([hidden[p] for p in cfg.positions], dim=1)


def _targets(cfg: HeadConfig, truths: list[dict]) -> torch.Tensor:
    """Per example each output's exact value, clipped to its range and scaled to [0, 1]: [n, outputs]."""
    lo = torch.tensor([o.lo for o in cfg.outputs])
    hi = torch.tensor([o.hi for o in cfg.outputs])
    raw = torch.tensor([[float(t[o.name]) for o in cfg.outputs] for t in truths], dtype=torch.float32)
    return ((raw.clamp(lo, hi) - lo) / (hi - lo))


def train_heads(model: CobraModel, tokenizer, views, configs: list[HeadConfig], say: Callable[[str], None] = print,
                **fit) -> tuple[list[ActionHead], dict]:
    """Fit heads to ``views`` (edge/sim/examples.py ``HeadExample``s: ``frame``, ``prompt``, ``truth`` {value:
    float}) on the frozen ``model``; ``fit``: ``fit_heads``'s options; -> (heads in eval mode, a training record)."""
    t0 = time.perf_counter()
    model.eval()
    hidden = hidden_states(model, tokenizer, [v.frame for v in views], [v.prompt for v in views])
    say(f"heads: hidden states of {len(views)} views in {time.perf_counter() - t0:.0f} s")
    heads, record = fit_heads(hidden, [v.truth for v in views], configs, say=say, **fit)
    record["minutes"] = round((time.perf_counter() - t0) / 60, 2)
    return heads, record


def fit_heads(hidden: dict[str, torch.Tensor], truths: list[dict], configs: list[HeadConfig], steps: int = 6000,
              lr: float | dict[str, float] = 3e-3, batch: int = 256, dropout: float = 0.2, seed: int = 0,
              weights: torch.Tensor | None = None, say: Callable[[str], None] = print
              ) -> tuple[list[ActionHead], dict]:
    """Each head fitted to ``truths`` from ``hidden`` (``hidden_states``' layout) by AdamW with a cosine schedule;
    ``dropout`` zeroes that share of each head's input values while training (the concatenated heads read P x
    d_model values and overfit without it); ``weights`` [n] (None: uniform): how often each example is drawn
    into a batch, relative to the others; ``lr``: one peak learning rate, or one per head name; -> (heads in eval
    mode, a training record). A head whose final loss is over half a constant's (each output's mean) did not fit:
    a warning names it, and so does the record's ``not_fitted``."""
    torch.manual_seed(seed)
    n = len(truths)
    if weights is not None and (weights.shape != (n,) or not bool((weights >= 0).all())
                                or not float(weights.sum()) > 0):
        raise ValueError(f"fit_heads: weights must be [{n}] (one per example), >= 0 and not all 0; got "
                         f"{tuple(weights.shape)}")
    heads, record = [], {"format": "cobra-edge-heads-training/1", "seed": seed, "steps": steps, "lr": lr,
                         "batch": batch, "dropout": dropout, "examples": n, "backbone": "frozen", "loss": {}}
    g = torch.Generator().manual_seed(seed)
    drop = torch.nn.Dropout(dropout)
    w = torch.ones(n) if weights is None else weights / weights.sum() * n  # for each head's constant loss
    for cfg in configs:
        head = ActionHead(cfg)
        x = at_positions(cfg, hidden)
        y = _targets(cfg, truths)
        peak = lr[cfg.name] if isinstance(lr, dict) else lr
        opt = torch.optim.AdamW(head.parameters(), lr=peak, weight_decay=1e-4)
        losses = []
        for step in range(steps):
            for group in opt.param_groups:
                group["lr"] = peak * 0.5 * (1 + math.cos(math.pi * step / steps))
            pick = (torch.randint(0, n, (min(batch, n),), generator=g) if weights is None
                    else torch.multinomial(weights, min(batch, n), replacement=True, generator=g))
            loss = ((torch.sigmoid(head.raw(drop(x[pick]))) - y[pick]) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        head.eval()
        record["loss"][cfg.name] = float(np.mean(losses[-50:]))
        # the loss of the best constant (each output's weighted mean): a head near it learnt nothing
        mean = (w[:, None] * y).sum(0) / w.sum()
        record.setdefault("constant_loss", {})[cfg.name] = constant = float(
            ((w[:, None] * (y - mean) ** 2).sum(0) / w.sum()).mean())
        say(f"heads: {cfg.name} trained, final loss {record['loss'][cfg.name]:.4f} (range units squared, "
            f"with dropout; a constant's {constant:.4f})")
        if record["loss"][cfg.name] > 0.5 * constant:
            say(f"heads: WARNING: head {cfg.name!r} did not fit (final loss {record['loss'][cfg.name]:.4f} against "
                f"{constant:.4f} for a constant): lower the learning rate or add dropout")
            record.setdefault("not_fitted", []).append(cfg.name)
        heads.append(head)
    return heads, record


@torch.no_grad()
def head_values(model: CobraModel, tokenizer, heads: list[ActionHead], views) -> list[dict[str, float]]:
    """The PyTorch reference's head values for ``views`` (what the runtime's act must equal)."""
    return _values(heads, hidden_states(model, tokenizer, [v.frame for v in views], [v.prompt for v in views]))


@torch.no_grad()
def head_values_continuous(model: CobraModel, tokenizer, heads: list[ActionHead], episodes
                           ) -> list[dict[str, float]]:
    """The PyTorch reference's head values for every frame of ``episodes`` run as continuous streams (what the
    runtime's continuous act must equal), episodes in order."""
    return _values(heads, hidden_states_continuous(model, tokenizer, episodes))


def _values(heads: list[ActionHead], hidden: dict[str, torch.Tensor]) -> list[dict[str, float]]:
    """Every head over ``hidden`` -> per example {value name: float}."""
    out = [{} for _ in range(hidden["image"].shape[0])]
    for h in heads:
        for i, row in enumerate(h(at_positions(h.cfg, hidden)).tolist()):
            out[i].update({o.name: v for o, v in zip(h.cfg.outputs, row)})
    return out


WIDE_BIAS, WIDE_NOISE = 0.5, 0.25  # wide approaches: the steering further off (edge/sim/examples.py approach)
WIDE_INDEX = 1_000_000  # their episode indices start here: other worlds than the plain approaches'
OVERSHOOT_INDEX = 2_000_000  # the overshooting approaches' first episode index (other worlds again)
TICK_INDEX = 10_000  # approaches at another tick than APPROACH_TICK_MS: first index + TICK_INDEX x tick (ms)
NEAR_M = 0.5  # continuous frames with the target's gap under this are weighted by near_weight


def approach_index(first: int, tick_ms: float, i: int) -> int:
    """The episode index of the ``i``-th approach of a kind (its ``first`` index) at ``tick_ms``: ``first + i`` at
    the plain 20 ms tick (the indices heads were trained on before ticks were a choice), else ``first`` +
    TICK_INDEX x tick + i, so that each tick drives in worlds of its own."""
    from edge.sim.examples import APPROACH_TICK_MS

    return first + i + (0 if tick_ms == APPROACH_TICK_MS else TICK_INDEX * int(round(tick_ms)))


HEAD_TICKS = (20.0, 30.0, 40.0, 60.0, 80.0, 120.0)  # ms: the loop's ticks from x1 to past x4 (docs/loop.md)
HEAD_LR = {"target": 3e-3, "path": 1e-3}  # peak learning rate per head (docs/training.md, "Its action heads")


def train_heads_file(weights: str | None, out: str, views: int = 48000, episodes: int = 224, steps: int = 8000,
                     seed: int = 0, wide_episodes: int = 0, overshoot_episodes: int = 224,
                     ticks: tuple[float, ...] | None = HEAD_TICKS, near_weight: float = 4.0, dropout: float = 0.0,
                     head_hidden: tuple[int, int] = (192, 96), lr: float | dict[str, float] = HEAD_LR,
                     say: Callable[[str], None] = print) -> dict:
    """``cobra-edge train --heads``: the embedded heads' recipe on a checkpoint of ``cobra-edge train`` (default: the
    embedded model), the backbone frozen: ``views`` camera views of edge/sim's world as a reset stream sees them,
    and every frame of ``episodes`` approaches as a continuous stream sees them (about 110 frames each), both of
    seed ``seed``, so that one head serves both modes; ``wide_episodes`` more approaches steered further off the
    target (bias up to WIDE_BIAS, noise WIDE_NOISE), so that continuous streams also see the target far to the side
    late in an approach; ``overshoot_episodes`` more approaches that never stop and drive on into the target, so
    that continuous streams also see the target blocking the way closer than the stop gap (a plain approach stops
    at its first such frame; a backbone whose state remembers its frames then learns "never blocked" for
    continuous streams, and a robot whose stop comes a tick late never stops: docs/loop.md). ``ticks`` (ms; None:
    the plain 20 ms alone; default HEAD_TICKS): every kind's approaches are driven at each of these ticks (that many episodes per
    tick), so that continuous streams see frames as far apart as a slower loop's. ``near_weight``: continuous
    frames whose target is closer than NEAR_M are drawn that many times as often while fitting (the stop is
    decided there, and they are few); ``dropout``: ``fit_heads``'; ``head_hidden``: ``target_heads``' ``hidden``;
    ``lr``: ``fit_heads``' (HEAD_LR: 3e-3 made the wide path head without dropout collapse to a constant on these
    data, and 1e-3 left the target head's bearing worse in the loop).
    Writes the heads (safetensors, with the record in its metadata and as JSON beside it) and -> the record. The
    held-out error is measured by ``cobra-edge eval`` (another seed, through the runtime)."""
    import json
    from pathlib import Path

    from edge.sim.examples import APPROACH_TICK_MS, HEAD_PROMPT, approach, head_example

    from .heads import save_heads
    from .tokenizer import prompt_tokenizer
    from .weights import EMBEDDED, load_trained, sha256

    if not (math.isfinite(near_weight) and near_weight > 0) or not 0 <= dropout < 1:
        raise ValueError(f"heads: near_weight must be > 0 (got {near_weight}) and dropout in [0, 1) (got {dropout})")
    ticks = tuple(float(t) for t in (ticks or (APPROACH_TICK_MS,)))
    if not all(0 < t <= 200 for t in ticks) or len(set(ticks)) != len(ticks):
        raise ValueError(f"heads: approach ticks must be distinct values in (0, 200] ms, got {list(ticks)}")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    model, tokenizer_json, _ = load_trained(weights or EMBEDDED)
    tokenizer = prompt_tokenizer(tokenizer_json, model.cfg)
    say(f"heads: drawing {views} views of edge/sim's world (seed {seed}) and their hidden states")
    model.eval()
    parts, truths = [], []
    for start in range(0, views, 2000):  # a chunk's frames at a time (24,000 frames would hold 5.5 GB)
        chunk = [head_example(seed, i) for i in range(start, min(views, start + 2000))]
        parts.append(hidden_states(model, tokenizer, [e.frame for e in chunk], [e.prompt for e in chunk]))
        truths += [e.truth for e in chunk]
        say(f"heads: {len(truths)}/{views} views, {time.perf_counter() - t0:.0f} s")
    kinds = (("", episodes, 0, {}),  # (label, how many, first episode index, approach's options)
             ("wide ", wide_episodes, WIDE_INDEX, {"bias": WIDE_BIAS, "noise": WIDE_NOISE}),
             ("overshooting ", overshoot_episodes, OVERSHOOT_INDEX, {"overshoot": True}))
    for label, n, first, kw in kinds:
        for tick in ticks:
            for start in range(0, n, 32):  # 32 continuous streams side by side
                chunk = [approach(seed, approach_index(first, tick, i), tick_ms=tick, **kw)
                         for i in range(start, min(n, start + 32))]
                parts.append(hidden_states_continuous(model, tokenizer, chunk))
                truths += [e.truth for episode in chunk for e in episode]
                say(f"heads: {min(n, start + 32)}/{n} {label}continuous episodes at {tick:g} ms, "
                    f"{len(truths) - views} frames in all, {time.perf_counter() - t0:.0f} s")
    hidden = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    configs = target_heads(model.cfg.lm.d_model, model.cfg.num_visual_tokens, tuple(head_hidden))
    near = torch.tensor([i >= views and t["distance"] < NEAR_M for i, t in enumerate(truths)])
    weight = None if near_weight == 1.0 else 1.0 + (near_weight - 1.0) * near.float()
    heads, record = fit_heads(hidden, truths, configs, steps=steps, lr=lr, seed=seed, dropout=dropout,
                              weights=weight, say=say)
    weights_path = Path(weights or EMBEDDED)
    record.update({"data": {"source": "edge.sim.examples.head_examples", "seed": seed, "views": views,
                            "continuous": {"source": "edge.sim.examples.approach", "episodes": episodes,
                                           "wide_episodes": wide_episodes, "wide_bias": WIDE_BIAS,
                                           "wide_noise": WIDE_NOISE, "wide_first_index": WIDE_INDEX,
                                           "overshoot_episodes": overshoot_episodes,
                                           "overshoot_first_index": OVERSHOOT_INDEX,
                                           "frames": len(truths) - views, "tick_ms": list(ticks),
                                           "tick_first_index": f"first + {TICK_INDEX} x tick, "
                                                               f"first at {APPROACH_TICK_MS:g} ms",
                                           "near_m": NEAR_M, "near_weight": near_weight,
                                           "near_frames": int(near.sum())},
                            "prompt": HEAD_PROMPT},
                   "backbone": {"file": weights_path.name, "sha256": sha256(weights_path), "frozen": True},
                   "minutes": round((time.perf_counter() - t0) / 60, 2),
                   "date": time.strftime("%Y-%m-%dT%H:%M:%S")})
    path = save_heads(heads, out, record)
    Path(out).with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    say(f"heads: wrote {path} in {record['minutes']:.1f} min")
    return record
