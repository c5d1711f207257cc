"""What a stream's frame gives back: the answer's text and tokens, the frame's profile, and (artifacts with action
heads) the heads' values. Its own module so that the batch path (edge/batch.py) makes answers without importing
the runtime that calls it."""

from __future__ import annotations

from dataclasses import dataclass

from .profile import FrameProfile


@dataclass
class Answer:
    stream: str
    text: str
    token_ids: list[int]
    profile: FrameProfile
    tag: object = None  # whatever the caller attached to the frame (the scheduler passes it through: ROS headers)
    choice: object = None  # the scoring.Choice when the answer was chosen from an answer set
    outputs: dict[str, float] | None = None  # the action heads' values (artifacts with heads; None without)
