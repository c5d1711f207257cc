"""Forks of a stream's state: prefill one frame's image tokens once, then answer many prompts about it.

    fork = cam.fork(frame)                 # vision + projector + image prefill, once
    fork.ask("Is the door open?")          # restore a copy + prompt prefill + decode
    fork.ask_all(["Where is the cup?", "How many people?"])   # all prompts in one batch

The snapshot is two arrays (one stream's slab): a fork costs one memcpy per prompt, not a vision pass.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .batch import Request, _failed, _start_row, _start_state, _visual_embeds, answer_batch
from .checks import finite_rows
from .errors import NonFiniteError, log_unexpected
from .profile import FrameProfile

if TYPE_CHECKING:
    from .answer import Answer
    from .runtime import Stream


@dataclass
class ImageFork:
    stream: "Stream"
    conv: np.ndarray  # [1, n_layer, d_inner, d_conv-1], the state after the image tokens
    ssm: np.ndarray
    profile: FrameProfile  # what the image cost: preprocess, vision, projector, image prefill

    @classmethod
    def create(cls, stream: "Stream", frame_bgr, timestamp=None, boxes=None) -> "ImageFork":
        rt = stream.runtime
        req = Request(stream, frame_bgr, "", 0, timestamp, boxes)
        try:
            row = _start_row(req, rt.takes_boxes)
            _visual_embeds(rt, [row])
            t0 = time.perf_counter()
            x = np.concatenate(row.parts, axis=1)
            conv, ssm = _start_state(rt, [row])
            out = rt.engines["prefill"].run({"inputs_embeds": x, "conv_state": conv, "ssm_state": ssm})
            row.profile.prefill += (time.perf_counter() - t0) * 1e3
            row.profile.prefill_tokens = x.shape[1]
            conv, ssm = out["conv_state_out"], out["ssm_state_out"]
            if not finite_rows(conv, ssm)[0]:
                reason = f"its state after the image of frame {row.profile.frame_index} held NaN or infinity"
                raise NonFiniteError(f"stream {stream.name!r}: {reason}; no fork; {stream.state_failed(reason)}")
        except Exception as e:
            log_unexpected(e, f"stream {stream.name!r}: fork")
            raise _failed(req, e, "fork") from e
        rt.pool.write(stream.slot, conv, ssm)
        return cls(stream, conv, ssm, row.timer.finish())

    def ask(self, prompt: str, max_new_tokens: int = 16) -> "Answer":
        return self.stream._one(self._request(prompt, max_new_tokens))

    def ask_all(self, prompts: list[str], max_new_tokens: int = 16) -> list["Answer"]:
        """Every prompt from its own copy of the snapshot, in one batch; raises the first failure."""
        results = answer_batch(self.stream.runtime, [self._request(p, max_new_tokens) for p in prompts])
        for r in results:
            if isinstance(r, Exception):
                raise r
        return results

    def _request(self, prompt: str, max_new_tokens: int) -> Request:
        return Request(self.stream, None, prompt, max_new_tokens, start=(self.conv, self.ssm), text_only=True,
                       write_state=False)
