"""A synthetic world with exact answers: scenes of coloured shapes (numpy + OpenCV, seeded, torch-free) and
question families whose answers are read from the scenes' geometry. The training data of the embedded model
(export/train.py), its evaluation (edge/evaluate.py) and ``cobra-edge run --synthetic`` all draw from it.

    from edge.world import make_item
    item = make_item("colour", seed=(1, 0, 0))
    frames = item.frames()                        # BGR uint8 [H, W, 3] each
    item.question.prompt, item.question.answer    # 'What colour is the circle?', 'red'

The distribution is in edge/world/spec.py and docs/world.md.
"""

from .items import Item, MotionRange, eval_items, make_item, move_weights, question_weights, training_scene
from .questions import ANSWERS, FAMILIES, SINGLE_FRAME, TEMPLATES, Question
from .render import render
from .scene import Scene, Shape, sample_sequence

__all__ = ["ANSWERS", "FAMILIES", "SINGLE_FRAME", "TEMPLATES", "Item", "MotionRange", "Question", "Scene", "Shape",
           "eval_items", "make_item", "move_weights", "question_weights", "render", "sample_sequence", "training_scene"]
