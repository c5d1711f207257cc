"""Shared data of the serve tests: frames and prompts from the synthetic world, per stream, deterministic."""

from __future__ import annotations

import pytest

from edge.world.items import make_item
from edge.world.questions import SINGLE_FRAME


def stream_items(stream: int, n: int) -> list[tuple]:
    """``n`` (frame, prompt) pairs for stream number ``stream``: single-frame questions of varied families."""
    out = []
    for k in range(n):
        item = make_item(SINGLE_FRAME[(stream + k) % len(SINGLE_FRAME)], (11, stream, k))
        out.append((item.frames()[-1], item.question.prompt))
    return out


@pytest.fixture(scope="session")
def serve_artifact(trained_artifact):
    """The embedded trained model (with its action heads), exported once per session."""
    return str(trained_artifact)
