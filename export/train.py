"""Training the tiny Cobra-shaped model on the synthetic world, end to end: both vision encoders, the projector
and the Mamba LM, on generated scenes and templated questions in the Zephyr chat format.

    result = train(TrainOptions(preset="tiny-ldp-96", seed=0), "run/tiny.safetensors")   # the embedded model's recipe

Each step (export/train_data.py): still scenes with several questions each, in reset mode (every question from
the state after its image: the image is prefilled once and its state shared by its questions, as
``Stream.fork`` does at run time), and motion items of 2 to 4 frames in continuous mode (image, question,
answer, next image, ...). The loss is the cross-entropy of the answer tokens and of the EOS after each answer
(motion answers weighted ``motion_weight``); the prompt and image positions carry no loss. The sequences are
laid out exactly as the runtime feeds them, so what is trained is what is served (the loss: export/train_loss.py).

Optionally (export/train_dense.py, docs/training.md "Dense supervision"): the vision encoders pretrained on the
scenes' exact cell labels first (``pretrain_steps``), and training-only heads reading cell, motion and scene labels
beside the answers (``dense_weight``, ``summary_weight``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .config import preset as preset_config
from .model import CobraModel, build_random
from .tokenizer import build_tiny_tokenizer, prompt_tokenizer
from .train_data import BatchStream, DataRecipe
from .train_dense import DenseHead, dense_grid
from .train_loss import step_loss, visual_tokens
from .train_plot import plot_curve
from .weights import save_trained

DT_RANGE = (0.1, 0.5)  # initial step sizes (mamba_ssm: 1e-3 to 1e-1): see init_for_training
A_SCALE = 1 / 64  # initial A = -(1 .. d_state) * this (mamba_ssm: -(1 .. d_state)): see init_for_training


@dataclass
class TrainOptions:
    preset: str = "tiny-ldp-96"  # the embedded default's shape (export/config.py: why not tiny)
    seed: int = 0
    steps: int = 2000  # question-answering steps (after any vision pretraining)
    lr: float = 2e-3
    min_lr_ratio: float = 0.05  # cosine decay to lr * this
    warmup: int = 100
    weight_decay: float = 0.01
    clip: float = 1.0
    motion_weight: float = 2.0
    motion_from: int = 500  # the first step with motion items (a curriculum: still scenes alone before it)
    dense_weight: float = 0.0  # weight of the visual tokens' cell labels (DenseHead); 0: answers alone
    summary_weight: float = 0.0  # weight of reading the whole scene off the LM at its last visual token (DenseHead)
    early_answer_weight: float = 0.0  # weight of the answer's first token predicted at the question's last word
    recall_weight: float = 0.0  # weight of recalling the frame before's cell labels at a later frame's tokens
    motion_summary_weight: float = 0.0  # weight of every pair's move read at a later frame's last visual token
    motion_layer: int | None = None  # per-token motion labels read at this LM layer's input (None: the final state)
    freeze_vision: bool = False  # after any pretraining, the vision encoders stay as they are (Cobra freezes them)
    keep_dense_head: bool = False  # with init_weights: continue the parent's DenseHead (dense_head_path) if saved
    init_weights: str | None = None  # continue from a checkpoint of cobra-edge train (no init, centring, pretraining)
    pretrain_steps: int = 0  # steps of vision pretraining on cell labels alone before the questions (train_dense)
    pretrain_scenes: int = 64  # still scenes per pretraining step
    pretrain_repeats: int = 3  # pretraining steps per drawn batch (every other one mirrored): drawing is the bound
    threads: int = 1  # torch's threads; the data worker takes another core (2 in all; see docs/training.md)
    eval_every: int = 200  # steps between validation runs (PyTorch, held-out validation seed)
    eval_per_family: int = 20
    validation_seed: int = 999  # never used for training batches nor for cobra-edge eval's default seed
    max_new_tokens: int = 4
    recipe: DataRecipe = field(default_factory=DataRecipe)
    workers: bool = True  # draw batches in a worker process
    log_every: int = 20

    def __post_init__(self) -> None:
        if self.motion_from >= self.steps:  # fewer steps than the curriculum's still phase: motion from half way
            self.motion_from = self.steps // 2

    @classmethod
    def quick(cls, **kw) -> "TrainOptions":
        """A few steps on small batches: the whole path (data, training, checkpoint) in seconds, for tests."""
        kw.setdefault("recipe", DataRecipe(scenes=4, questions=2, sequences=1))
        kw.setdefault("steps", 3)
        kw.setdefault("motion_from", 1)
        kw.setdefault("pretrain_scenes", 4)
        return cls(eval_every=3, eval_per_family=2, warmup=1, workers=False, log_every=1, **kw)


@dataclass
class TrainResult:
    weights: Path
    record: dict
    model: CobraModel
    tokenizer_json: str


def sincos_2d(grid: int, width: int) -> torch.Tensor:
    """[grid * grid, width] fixed 2D sine-cosine position code (MAE's): half the channels code the row, half the
    column, at geometric frequencies; values in [-1, 1], row-major like the patch grid."""
    quarter = width // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float32) / quarter)
    ys, xs = torch.meshgrid(torch.arange(grid, dtype=torch.float32), torch.arange(grid, dtype=torch.float32),
                            indexing="ij")
    parts = [f(pos.flatten()[:, None] * omega) for pos in (ys, xs) for f in (torch.sin, torch.cos)]
    code = torch.cat(parts, dim=1)
    return torch.nn.functional.pad(code, (0, width - code.shape[1]))


def init_for_training(model: CobraModel) -> CobraModel:
    """Start the ViTs' patch position embeddings from a 2D sine-cosine code instead of small noise. The Mamba LM
    has no position of its own over the image tokens (its scan is the same at every token): where a shape is
    must be written into the tokens, and with noise of 0.02 (or build_random's 0.1) it is too faint for the
    position, path and count questions to be learned in the training budget (measured: the path question stayed
    at chance for 400 steps). Real DINOv2 / SigLIP checkpoints bring learned position embeddings of that scale."""
    from .vision import ViTEncoder

    with torch.no_grad():
        g = torch.Generator().manual_seed(0)
        for layer in model.llm.backbone.layers:
            bias = layer.mixer.dt_proj.bias
            dt = torch.exp(torch.rand(bias.shape, generator=g) * (math.log(DT_RANGE[1]) - math.log(DT_RANGE[0]))
                           + math.log(DT_RANGE[0]))
            bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
            layer.mixer.A_log.copy_(torch.log(-layer.mixer.A_log.exp().neg() * A_SCALE))
        for enc in model.vision.modules() if model.vision is not None else ():
            if isinstance(enc, ViTEncoder):
                grid, width = enc.cfg.grid, enc.cfg.width
                pos = enc.pos_embed  # [1, prefix? + grid^2, width]
                pos[0, -grid * grid:] = sincos_2d(grid, width)
    return model


def center_visual_tokens(model: CobraModel, pixels: torch.Tensor, boxes: list) -> float:
    """Data-dependent init: subtract the mean visual token (over ``pixels``' images and positions) from the bias
    of the projector's last Linear to d_model. A randomly initialised encoder and projector give every token
    mostly the same vector (measured on the tiny model: the mean is 84 to 94 % of a token's norm), so after the
    LM's RMSNorm one shape's token hardly differs from the background's, and nothing about the image was learned
    in hundreds of steps; centred, the tokens differ by what they see. -> the mean's share of a token's norm."""
    last = [m for m in model.projector.modules()
            if isinstance(m, torch.nn.Linear) and m.out_features == model.cfg.lm.d_model and m.bias is not None]
    if not last:
        return float("nan")
    with torch.no_grad():
        tokens = torch.cat([v for v in visual_tokens(model, pixels, boxes)])  # [n * T, d_model]
        mean = tokens.mean(0)
        last[-1].bias.sub_(mean)
        return float(mean.norm() / tokens.norm(dim=-1).mean())


def _continued(opts: TrainOptions) -> tuple[CobraModel, dict]:
    """The model of ``opts.init_weights`` (a checkpoint of cobra-edge train, of ``opts.preset``'s shape) in train
    mode, and what the new record says of it."""
    from .weights import load_trained, sha256

    model, tokenizer_json, record = load_trained(opts.init_weights)
    if tokenizer_json != build_tiny_tokenizer(model.cfg.lm.vocab_size).to_str():
        raise ValueError(f"{opts.init_weights}: its tokenizer is not the tiny models' (cobra-edge train builds that one)")
    if model.cfg.name != opts.preset:
        raise ValueError(f"--init-weights {opts.init_weights} is a {model.cfg.name!r} model; --preset is {opts.preset!r}")
    if opts.pretrain_steps:
        raise ValueError("--init-weights continues a trained model: its vision is trained already (no --pretrain-steps)")
    minutes = record.get("minutes_in_all")
    if minutes is None and "minutes" in record:  # records written before minutes_in_all
        minutes = record["minutes"] + ((record.get("vision_pretraining") or {}).get("minutes") or 0.0)
    if minutes is None:
        raise ValueError(f"{opts.init_weights}: no training record with its minutes beside it (.json)")
    # the batches it was trained on end here (a continuation of a continuation counts from its parent's end)
    data_end = (record.get("data_recipe") or {}).get("data_steps", [0, record.get("steps") or 0])[1]
    return model.train(), {"file": Path(opts.init_weights).name, "sha256": sha256(opts.init_weights),
                           "steps": record.get("steps"), "data_end": int(data_end), "minutes_in_all": float(minutes),
                           "options": record.get("options")}


def dense_head_path(weights: str | Path) -> Path:
    """Where train() writes a checkpoint's DenseHead (training only, never exported): ``W.dense.safetensors``."""
    return Path(weights).with_suffix(".dense.safetensors")


def _keep_dense_head(dense: DenseHead, opts: TrainOptions, say: Callable[[str], None]) -> dict:
    """Load the parent's DenseHead into ``dense`` (its optional heads: those both have; the rest stay fresh).
    Without it, every continuation starts its cell-label and motion-label heads from random weights, and their
    first steps' gradients into the LM are the random heads' (cell-label loss 3.7 at a stage's first step, about
    0.1 once learnt). -> what the record says of it."""
    from .train_dense import load_dense_head

    path = dense_head_path(opts.init_weights)
    if not path.exists():
        raise ValueError(f"--keep-dense-head: {path} is missing (checkpoints written before it was saved have none; "
                         "continue without --keep-dense-head)")
    loaded = load_dense_head(dense, path)
    fresh = sorted({k.split(".")[0] for k in dense.state_dict()} - {k.split(".")[0] for k in loaded})
    say(f"dense head continued from {path.name}" + (f" (fresh: {', '.join(fresh)})" if fresh else ""))
    return {"file": path.name, "fresh": fresh}


def _lr(opts: TrainOptions, step: int) -> float:
    if step < opts.warmup:
        return opts.lr * (step + 1) / opts.warmup
    t = (step - opts.warmup) / max(1, opts.steps - opts.warmup)
    return opts.lr * (opts.min_lr_ratio + (1 - opts.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def validate(model: CobraModel, tokenizer, seed: int, per_family: int, max_new_tokens: int = 4) -> dict[str, float]:
    """Accuracy per family of the PyTorch model on held-out items (continuous mode: the motion family's earlier
    frames are remembered; every item starts from a zero state)."""
    from edge.world import FAMILIES, eval_items

    from .reference import ReferenceStream

    stream = ReferenceStream(model, tokenizer, mode="continuous")
    right: dict[str, list[bool]] = {f: [] for f in FAMILIES}
    for item in eval_items(seed, per_family):
        stream.reset()
        for frame, boxes, q in zip(item.frames(), item.boxes(), item.questions):
            text = tokenizer.decode(stream.ask(frame, q.prompt, max_new_tokens, boxes))
        right[item.family].append(text.strip() == item.question.answer)
    return {f: float(np.mean(v)) for f, v in right.items()}


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def train(opts: TrainOptions, out: str | Path, say: Callable[[str], None] = print,
          plot: bool = True) -> TrainResult:
    """Train, then write ``out`` (safetensors), its record (``out`` with .json) and its curve (.png)."""
    torch.manual_seed(opts.seed)
    torch.set_num_threads(opts.threads)
    torch.set_flush_denormal(True)  # the scan's decays underflow to denormals, which are ~100x slower on x86
    cfg = preset_config(opts.preset)
    if opts.keep_dense_head and not opts.init_weights:
        raise ValueError("--keep-dense-head continues a checkpoint's dense head: give --init-weights")
    parent = None
    if opts.init_weights:
        model, parent = _continued(opts)
        cfg = model.cfg
    else:
        model = init_for_training(build_random(cfg, seed=opts.seed))
    grid = (dense_grid(model) if opts.dense_weight > 0 or opts.summary_weight > 0 or opts.recall_weight > 0
            or opts.motion_summary_weight > 0 or opts.pretrain_steps else 0)
    recipe = DataRecipe(**{**asdict(opts.recipe), "image_size": cfg.image_size, "boxes": cfg.object_tokens,
                           "dense_grid": grid})
    dense = DenseHead(cfg.lm.d_model, recall=opts.recall_weight > 0,
                      motion_summary=opts.motion_summary_weight > 0) if grid else None
    kept = _keep_dense_head(dense, opts, say) if dense is not None and parent and opts.keep_dense_head else None
    from .train_data import draw_batch

    share = float("nan")
    if parent is None:
        sample = draw_batch(DataRecipe(**{**asdict(recipe), "sequences": 0, "scenes": recipe.scenes or 32}), opts.seed, -1)
        share = center_visual_tokens(model, torch.from_numpy(sample.pixels), sample.boxes)
    pretrained = None
    if dense is not None and opts.pretrain_steps and parent is None:
        from . import train_dense

        pretrained = train_dense.pretrain_vision(model, dense, grid, opts.pretrain_steps, seed=opts.seed,
                                                 scenes=opts.pretrain_scenes, repeats=opts.pretrain_repeats,
                                                 workers=opts.workers, say=say,
                                                 log_every=max(1, min(100, opts.pretrain_steps)))
    model.train()
    tok = build_tiny_tokenizer(cfg.lm.vocab_size)
    tokenizer_json = tok.to_str()
    tokenizer = prompt_tokenizer(tokenizer_json, cfg, cache_size=512)
    def decays(name, p):  # matrices only: not the embedding, nor the SSM's A_log
        return p.ndim >= 2 and "embedding" not in name and not name.endswith("A_log")

    if opts.freeze_vision and model.vision is not None:
        model.vision.requires_grad_(False)
    trained = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trained if decays(n, p)]
    no_decay = [p for n, p in trained if not decays(n, p)]
    groups = [{"params": decay, "weight_decay": opts.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if dense is not None:
        groups.append({"params": list(dense.parameters()), "weight_decay": 0.0})
    optim = torch.optim.AdamW(groups, lr=opts.lr, betas=(0.9, 0.98))
    load_before = _load_average()
    say(f"train {cfg.name}: {sum(p.numel() for p in model.parameters()):,} parameters, {opts.steps} steps of "
        f"{recipe.scenes} scenes x {recipe.questions} questions + {recipe.sequences} motion items, seed {opts.seed}, "
        f"{opts.threads} torch thread(s) + {int(opts.workers)} data worker; load average before {load_before}; "
        + (f"continuing {opts.init_weights} ({parent['steps']} steps)" if parent else
           f"visual tokens centred (their mean was {100 * share:.0f} % of a token's norm)"))
    curve = {"step": [], "loss": [], "single": [], "sequence": [], "eval_step": [], "accuracy": []}
    # a continuation draws the batches after its parent's (new scenes, not the ones it was trained on)
    first = int(parent["data_end"]) if parent else 0
    stream = BatchStream(recipe, opts.seed, range(first, first + opts.steps), workers=opts.workers,
                         motion_from=first + opts.motion_from)
    t0 = time.perf_counter()
    window: list[float] = []
    try:
        for data_step, batch in stream:
            step = data_step - first
            for g in optim.param_groups:
                g["lr"] = _lr(opts, step)
            loss, parts = step_loss(model, tokenizer, batch, opts.motion_weight, dense, opts.dense_weight,
                                    opts.summary_weight, opts.early_answer_weight, recall_weight=opts.recall_weight,
                                    motion_summary_weight=opts.motion_summary_weight, motion_layer=opts.motion_layer)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_([p for _, p in trained], opts.clip)
            optim.step()
            window.append(float(loss.detach()))
            if (step + 1) % opts.log_every == 0 or step + 1 == opts.steps:
                curve["step"].append(step + 1)
                curve["loss"].append(float(np.mean(window)))
                curve["single"].append(parts.get("single", float("nan")))
                curve["sequence"].append(parts.get("sequence", float("nan")))
                window = []
                say(f"step {step + 1:>5}/{opts.steps}  loss {curve['loss'][-1]:.4f}  lr {_lr(opts, step):.2e}  "
                    + (f"dense {parts['dense']:.3f}  " if "dense" in parts else "")
                    + (f"motion aux {parts['dense_motion']:.3f}  " if "dense_motion" in parts else "")
                    + (f"summary {parts['summary']:.3f}  " if "summary" in parts else "")
                    + (f"early answer {parts['early_answer']:.3f}  " if "early_answer" in parts else "")
                    + (f"recall {parts['recall']:.3f}  " if "recall" in parts else "")
                    + (f"motion summary {parts['motion_summary']:.3f}  " if "motion_summary" in parts else "")
                    + f"{(time.perf_counter() - t0) / 60:.1f} min")
            if (step + 1) % opts.eval_every == 0 or step + 1 == opts.steps:
                model.eval()
                acc = validate(model, tokenizer, opts.validation_seed, opts.eval_per_family, opts.max_new_tokens)
                model.train()
                curve["eval_step"].append(step + 1)
                curve["accuracy"].append(acc)
                say(f"  validation ({opts.eval_per_family} per family, PyTorch): "
                    + ", ".join(f"{f} {a:.0%}" for f, a in acc.items()))
    finally:
        stream.close()
    minutes = (time.perf_counter() - t0) / 60
    load_after = _load_average()
    model.eval()
    record = {
        "format": "cobra-edge-training-record/1",
        "preset": opts.preset,
        "model": cfg.name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seed": opts.seed,
        "steps": opts.steps,
        "minutes": round(minutes, 2),  # the question steps; the vision pretraining's own are in its record below
        # with init_weights, the parent's own minutes_in_all too: what the weights cost from scratch
        "minutes_in_all": round(minutes + (pretrained["minutes"] if pretrained else 0.0)
                                + (parent["minutes_in_all"] if parent else 0.0), 2),
        "initialised_from": parent,
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": opts.threads,
                    "cpu_count": os.cpu_count(), "load_average_before": load_before, "load_average_after": load_after,
                    "torch": torch.__version__},
        "options": {k: v for k, v in asdict(opts).items() if k != "recipe"},
        "data_recipe": {**asdict(recipe), "source": "edge.world: training_scene(rng(seed, step)) still scenes and "
                                                    "make_item('motion', (seed, step, 2, j)) sequences",
                        "data_steps": [first, first + opts.steps]},
        "final_loss": curve["loss"][-1] if curve["loss"] else None,
        "vision_pretraining": pretrained,
        "dense_head": {"kept_from": kept, "file": dense_head_path(out).name} if dense is not None else None,
        "validation": {"seed": opts.validation_seed, "per_family": opts.eval_per_family,
                       "accuracy": curve["accuracy"][-1] if curve["accuracy"] else None,
                       "reference": "PyTorch model, continuous mode, greedy"},
        "curve": curve,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if dense is not None:  # training only, beside the weights, so that a continuation can keep it
        from safetensors.torch import save_file

        Path(out).parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.detach().contiguous() for k, v in dense.state_dict().items()}, str(dense_head_path(out)))
    out = save_trained(model, out, tokenizer_json, record)
    say(f"trained in {minutes:.1f} min" + (f" after {pretrained['minutes']:.1f} min of vision pretraining" if pretrained else "")
        + f"; load average after {load_after}; wrote {out} and {out.with_suffix('.json')}")
    if plot:
        png = plot_curve(curve, out.with_suffix(".png"), f"{cfg.name}, seed {opts.seed}")
        say(f"wrote {png}" if png else "(no curve PNG: matplotlib is not installed; pip install 'cobra-edge[plot]')")
    return TrainResult(out, json.loads(out.with_suffix(".json").read_text()), model, tokenizer_json)
