"""Training in stages: each stage continues the previous stage's checkpoint (TrainOptions.init_weights) with its
own options, so a recipe of several stages is one command and one seed.

    result = train_stages(CURRICULUM, "runs/tiny.safetensors")     # runs/tiny-1-questions.safetensors, ... then
                                                                    # runs/tiny.safetensors (the last stage's)

``CURRICULUM`` (docs/training.md, "The curriculum: fifteen stages"): the vision pretrained on cell labels and 1200 question
steps; then 300 steps of motion items alone with large moves over two frames (the easy end, where the state first
learns to carry a shape's place); then 900 steps of still questions with 16 motion items of the world's own range;
then 900 more of the same at half the learning rate, twice; then 900 whose still scenes ask colour, position and
presence twice as often and count and path half as often (``DataRecipe.question_weights``); then 900 more that ask
presence three times as often, colour and position one and a half times, count and path half; then 900 more with
colour back at one; then 900 more whose motion items move 0.07 to 0.13 per frame; then 1500 steps of 8 still
scenes and 24 of the world's motion items, continuing the training-only dense head of the stage before; then the
same for 3000 steps, five times.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from edge.world.spec import SEQUENCE_FRAMES, SPEED_RANGE

from .train import TrainOptions, TrainResult, dense_head_path, train
from .train_data import DataRecipe
from .weights import record_path


@dataclass(frozen=True)
class Stage:
    name: str  # a word for its checkpoint's file name
    options: dict = field(default_factory=dict)  # TrainOptions fields (``recipe``: a DataRecipe)


def _mixed(name: str, lr: float, steps: int = 900, keep_dense_head: bool = False, **recipe) -> Stage:
    """``steps`` steps of 32 still scenes x 6 questions and 16 motion items of the world's range (``recipe``: other
    DataRecipe fields), the cell / motion labels and the early answer at weight 1, 50 warm-up steps."""
    opts = {"steps": steps, "lr": lr, "warmup": 50, "motion_from": 0, "dense_weight": 1.0, "early_answer_weight": 1.0,
            "recipe": DataRecipe(**{"sequences": 16, **recipe})}
    return Stage(name, {**opts, "keep_dense_head": True} if keep_dense_head else opts)


def _motion_weighted(name: str, steps: int) -> Stage:
    """``steps`` steps of 8 still scenes x 6 questions and 24 motion items of the world's own range, lr 5e-4, the
    dense head kept from the stage before."""
    return _mixed(name, 5e-4, steps=steps, keep_dense_head=True, scenes=8, sequences=24,
                  motion_frames=SEQUENCE_FRAMES, motion_speed=SPEED_RANGE)


CURRICULUM: tuple[Stage, ...] = (
    Stage("questions", {"pretrain_steps": 3000, "dense_weight": 1.0, "early_answer_weight": 1.0, "steps": 1200}),
    Stage("motion-large", {"steps": 300, "lr": 1e-3, "warmup": 50, "motion_from": 0, "dense_weight": 1.0,
                           "recipe": DataRecipe(scenes=0, sequences=24, motion_frames=(2, 2),
                                                motion_speed=(0.2, 0.3))}),
    _mixed("mixed", 1e-3),
    _mixed("mixed-more", 5e-4),
    _mixed("mixed-longer", 5e-4),
    # colour, position and presence (the binding of colour to kind) asked more, count and path less
    _mixed("weighted", 5e-4, question_weights=(2.0, 2.0, 0.5, 2.0, 0.5)),
    # presence (a colour bound to the right kind; where it fails: docs/training.md, "Stages 5 and 6") asked most
    _mixed("presence", 5e-4, question_weights=(1.5, 1.5, 0.5, 3.0, 0.5)),
    _mixed("presence-more", 5e-4, question_weights=(1.0, 1.5, 0.5, 3.0, 0.5)),
    # motion items moving 0.07 to 0.13 per frame, a little more than the world's (docs/training.md, "Stage 9")
    _mixed("wider-moves", 5e-4, motion_speed=(0.07, 0.13), question_weights=(1.0, 1.5, 0.5, 3.0, 0.5)),
    # 1500 steps weighted to the world's own motion items (8 still scenes, 24 motion items), the dense head kept
    _motion_weighted("motion-long", 1500),
    # the same for 3000 steps, five times (docs/training.md, "Stages 11 and 12" and "Stages 13 to 15")
    _motion_weighted("motion-longer", 3000),
    _motion_weighted("motion-longer-2", 3000),
    _motion_weighted("motion-longer-3", 3000),
    _motion_weighted("motion-longer-4", 3000),
    _motion_weighted("motion-longer-5", 3000),
)


def quick_stages(stages: tuple[Stage, ...]) -> tuple[Stage, ...]:
    """The same stages at TrainOptions.quick's size (a few small steps each): the whole chain in seconds."""
    out = []
    for s in stages:
        recipe = s.options.get("recipe")
        small = TrainOptions.quick().recipe
        if recipe is not None:
            small = replace(recipe, scenes=min(recipe.scenes, small.scenes), questions=small.questions,
                            sequences=min(recipe.sequences, 2))
        opts = {k: v for k, v in s.options.items() if k not in ("steps", "recipe", "warmup")}
        if "pretrain_steps" in opts:
            opts["pretrain_steps"] = 2
        out.append(Stage(s.name, {**opts, "recipe": small}))
    return tuple(out)


def train_stages(stages: tuple[Stage, ...], out: str | Path, preset: str = "tiny-ldp-96", seed: int = 0,
                 quick: bool = False, say: Callable[[str], None] = print) -> TrainResult:
    """Run ``stages`` in order, stage k + 1 from stage k's checkpoint (``out``'s stem + -k-name, beside ``out``);
    the last one's weights, record and curve are also written as ``out``. Its record's ``initialised_from`` chain
    names every stage, and ``minutes_in_all`` counts them all."""
    out = Path(out)
    make = TrainOptions.quick if quick else TrainOptions
    previous: Path | None = None
    result = None
    for k, stage in enumerate(quick_stages(stages) if quick else stages, 1):
        opts = make(preset=preset, seed=seed, init_weights=str(previous) if previous else None, **stage.options)
        path = out.with_name(f"{out.stem}-{k}-{stage.name}{out.suffix}")
        say(f"stage {k}/{len(stages)} ({stage.name}): {path}")
        result = train(opts, path, say=say)
        previous = path
    shutil.copyfile(previous, out)
    if dense_head_path(previous).exists():
        shutil.copyfile(dense_head_path(previous), dense_head_path(out))
    if previous.with_suffix(".png").exists():
        shutil.copyfile(previous.with_suffix(".png"), out.with_suffix(".png"))
    record = {**result.record, "weights": {**result.record["weights"], "file": out.name},
              "stages": [s.name for s in stages]}
    record_path(out).write_text(json.dumps(record, indent=2) + "\n")
    return TrainResult(out, record, result.model, result.tokenizer_json)
