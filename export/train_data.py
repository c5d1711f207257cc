"""Training batches from the synthetic world (edge/world), as numpy arrays: no torch here, so a worker process
can draw them while the trainer computes.

A batch is drawn from ``(seed, step)`` alone, so a run is the same whatever the worker's timing:
- ``scenes``: still scenes, each with up to ``questions`` questions of the single-frame families; the questions
  of one scene share its image's prefill (reset mode: each question starts from the state after the image);
- ``sequences``: motion items (2 to 4 frames), each a continuous-mode exchange: per frame its image, its
  question and its answer, the last question being the motion one.
Frames are preprocessed exactly as the runtime does (edge.preprocess: area resize to the model's square input).
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass

import numpy as np

from edge.preprocess import preprocess
from edge.world import MotionRange, make_item, render, training_scene
from edge.world.items import valid_question_weights
from edge.world.dense import cell_labels, motion_labels, scene_summary


@dataclass
class DataRecipe:
    """What one training step sees. Numbers recorded in the training record."""

    scenes: int = 32  # still scenes per step
    questions: int = 6  # questions per still scene (distinct; fewer when the scene has fewer exact ones)
    sequences: int = 8  # motion items per step (2 to 4 frames each)
    image_size: int = 112  # the model's input (ModelConfig.image_size)
    boxes: bool = False  # also return each frame's shape boxes (models with object tokens)
    dense_grid: int = 0  # also return each frame's cell labels on this grid (edge/world/dense.py); 0: none
    motion_frames: tuple[int, int] | None = None  # frames per motion item (None: the world's, 2 to 4)
    motion_speed: tuple[float, float] | None = None  # moving shapes' speed per frame (None: the world's, 0.05 to 0.09)
    question_weights: tuple[float, ...] | None = None  # single-frame families' weights (edge.world.question_weights)
    motion_moves: tuple[float, ...] | None = None  # motion items' moves weighted (world.move_weights; None: uniform)

    def __post_init__(self):
        if self.question_weights is not None:  # a bad weight is an error here, not in the data worker
            self.question_weights = valid_question_weights(self.question_weights)

    def motion_range(self) -> MotionRange | None:
        """The motion items' range when the recipe sets one (what it leaves out is the world's), else None."""
        given = {k: tuple(v) for k, v in (("frames", self.motion_frames), ("speed", self.motion_speed),
                                          ("moves", self.motion_moves)) if v is not None}
        return MotionRange(**given) if given else None


@dataclass
class Batch:
    pixels: np.ndarray  # uint8 [n_scenes, S, S, 3]
    boxes: list  # per scene: float32 [k, 4] (empty lists when the recipe has no boxes)
    qa: list  # (scene index, prompt, answer)
    seq_pixels: list  # per sequence: uint8 [frames, S, S, 3]
    seq_boxes: list  # per sequence: per frame float32 [k, 4]
    seq_qa: list  # per sequence: [(prompt, answer, family), ...] one per frame
    dense: list | None = None  # per scene then per sequence frame: (present, centre, offset) (dense_grid > 0)
    seq_motion: list | None = None  # per sequence: int64 [frames, grid^2, 21] motion labels (dense_grid > 0)
    summary: list | None = None  # per scene: edge/world/dense.py scene_summary (dense_grid > 0)


def draw_batch(recipe: DataRecipe, seed: int, step: int, motion: bool = True) -> Batch:
    rng = np.random.default_rng([seed, step % 2**63, 1])  # step -1: the sample that centres the visual tokens
    pixels, boxes, qa, dense, summary = [], [], [], [], []
    for j in range(recipe.scenes):
        scene, questions = training_scene(rng, recipe.questions, recipe.question_weights)
        pixels.append(preprocess(render(scene, rng), recipe.image_size))
        boxes.append(scene.boxes() if recipe.boxes else [])
        qa += [(j, q.prompt, q.answer) for q in questions]
        if recipe.dense_grid:
            dense.append(cell_labels(scene, recipe.dense_grid))
            summary.append(scene_summary(scene))
    seq_pixels, seq_boxes, seq_qa, seq_motion = [], [], [], []
    motion_range = recipe.motion_range()
    for j in range(recipe.sequences if motion else 0):
        item = make_item("motion", (seed, step % 2**63, 2, j), motion_range)
        seq_pixels.append(np.stack([preprocess(f, recipe.image_size) for f in item.frames()]))
        seq_boxes.append(item.boxes() if recipe.boxes else [])
        seq_qa.append([(q.prompt, q.answer, q.family) for q in item.questions])
        if recipe.dense_grid:
            dense += [cell_labels(s, recipe.dense_grid) for s in item.scenes]
            seq_motion.append(motion_labels(list(item.scenes), recipe.dense_grid))
    still = np.stack(pixels) if pixels else np.zeros((0, recipe.image_size, recipe.image_size, 3), np.uint8)
    return Batch(still, boxes, qa, seq_pixels, seq_boxes, seq_qa, dense or None, seq_motion or None,
                 summary or None)


def _worker(recipe: DataRecipe, seed: int, steps: range, motion_from: int, queue) -> None:
    import cv2

    cv2.setNumThreads(1)
    for step in steps:
        queue.put((step, draw_batch(recipe, seed, step, motion=step >= motion_from)))


class BatchStream:
    """Batches for ``steps`` drawn by one worker process, a few steps ahead of the trainer; in step order."""

    def __init__(self, recipe: DataRecipe, seed: int, steps: range, ahead: int = 6, workers: bool = True,
                 motion_from: int = 0):
        """``motion_from``: the first step whose batch has motion items (a curriculum)."""
        self.recipe, self.seed, self.steps, self.motion_from = recipe, seed, steps, motion_from
        self._proc = None
        if workers:
            ctx = mp.get_context("spawn")  # no fork of a process that runs torch's thread pools
            self._queue = ctx.Queue(maxsize=ahead)
            self._proc = ctx.Process(target=_worker, args=(recipe, seed, steps, motion_from, self._queue), daemon=True)
            self._proc.start()

    def __iter__(self):
        for step in self.steps:
            if self._proc is None:
                yield step, draw_batch(self.recipe, self.seed, step, motion=step >= self.motion_from)
                continue
            got, batch = self._queue.get(timeout=600)
            if got != step:
                raise RuntimeError(f"training data worker sent step {got}, expected {step}")
            yield step, batch

    def close(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
