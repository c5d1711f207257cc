"""A camera on the synthetic world: moving scenes of shapes, each frame with a question and its exact answer.

Used by ``cobra-edge run --synthetic``, ``demo`` and ``profile --synthetic``: it reads like any source
(``read() -> (frame_bgr, timestamp)``, ``boxes`` of the last frame for object-token models) and also says what to
ask about the last frame (``question``: a single-frame family, drawn from the seed).
"""

from __future__ import annotations

import time
from typing import Iterator

import numpy as np

from . import spec
from .items import _some_question
from .questions import Question
from .render import render
from .scene import sample_sequence


class WorldSource:
    """Episodes of ``episode`` frames of one moving scene, then a new scene; deterministic per seed."""

    kind = "synthetic world"

    def __init__(self, seed: int = 0, episode: int = spec.SEQUENCE_FRAMES[1]):
        self.seed, self.episode = seed, episode
        self.index = 0
        self.boxes = np.zeros((0, 4), np.float32)
        self.question: Question | None = None
        self._scenes: list = []

    def read(self) -> tuple[np.ndarray, float]:
        k = self.index % self.episode
        if k == 0:
            self._scenes = sample_sequence(np.random.default_rng([self.seed, self.index, 3]), frames=self.episode)
        scene = self._scenes[k]
        frame = render(scene, np.random.default_rng([self.seed, self.index, 4]))
        self.boxes = scene.boxes()
        self.question = _some_question(np.random.default_rng([self.seed, self.index, 5]), scene)
        self.index += 1
        return frame, time.time()

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        while True:
            yield self.read()
