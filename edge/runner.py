"""Answer frames from several sources, one stream each, in turn; shared by ``cobra-edge run`` and ``demo``."""

from __future__ import annotations

import threading
from typing import Callable

from engines.base import EngineError

from .errors import CobraEdgeError
from .profile import Profiler
from .runtime import Answer, Runtime
from .sources import SourceError


def answer_sources(runtime: Runtime, sources: dict[str, object], prompt: str | None, frames: int, max_new_tokens: int,
                   on_answer: Callable[[Answer], None] | None = None,
                   on_error: Callable[[str, Exception], None] | None = None,
                   stop: threading.Event | None = None) -> Profiler:
    """Up to ``frames`` frames per source, round robin. A source that ends or fails, or a frame that fails, is
    reported through ``on_error`` and never stops the other streams. ``stop`` ends the run after the current
    round (SIGINT / SIGTERM in ``cobra-edge run``). ``prompt`` None: each frame is asked the question its source
    poses about it (edge.world's WorldSource), and the Answer's ``tag`` is that question (with its exact answer)."""
    profiler = Profiler()
    streams = {name: runtime.open_stream(name) for name in sources}
    live = dict(sources)
    try:
        for _ in range(frames):
            if not live or (stop is not None and stop.is_set()):
                break
            for name in list(live):
                try:
                    item = live[name].read()
                except Exception as e:  # the source is broken: it alone stops
                    del live[name]
                    if on_error:
                        on_error(name, SourceError(f"source of stream {name!r} failed: {type(e).__name__}: {e}"))
                    continue
                if item is None:
                    del live[name]
                    if on_error:
                        on_error(name, EOFError(f"source of stream {name!r} ended"))
                    continue
                frame, ts = item
                boxes = getattr(live[name], "boxes", None) if runtime.takes_boxes else None  # synthetic: its shapes
                question = getattr(live[name], "question", None) if prompt is None else None
                try:
                    answer = streams[name].ask(frame, question.prompt if question else prompt,
                                               max_new_tokens=max_new_tokens, timestamp=ts, boxes=boxes)
                    if question:
                        answer.tag = question
                except (CobraEdgeError, EngineError) as e:
                    if on_error:
                        on_error(name, e)
                    continue
                profiler.add(answer.profile)
                if on_answer:
                    on_answer(answer)
    finally:
        for s in streams.values():
            s.close()
    return profiler
