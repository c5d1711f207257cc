"""The PyTorch reference answering frames as the runtime does (edge/batch.py + edge/decode.py), one stream at a
time: what ``cobra-edge eval`` puts beside the runtime's answers.

Same semantics: the visual tokens (+ one per box for object-token models), then the templated prompt, prefilled
from a zero state (``reset``) or from the state the previous frame ended in (``continuous``); greedy decoding to
EOS or ``max_new_tokens``; in continuous mode the last answer token is fed too, so the state holds the whole
exchange. The prefill uses the Python-loop scan (export/scan.py's reference), the decode the reference step.
"""

from __future__ import annotations

import numpy as np
import torch

from edge.preprocess import preprocess

from .model import CobraModel


class ReferenceStream:
    def __init__(self, model: CobraModel, tokenizer, mode: str = "reset"):
        """tokenizer: an edge.tokenizer.PromptTokenizer (the artifact's), mode: "reset" | "continuous"."""
        self.model, self.tokenizer, self.mode = model.eval(), tokenizer, mode
        self.state = None

    def reset(self) -> None:
        self.state = None

    @torch.no_grad()
    def ask(self, frame_bgr: np.ndarray, prompt: str, max_new_tokens: int = 16, boxes=None) -> list[int]:
        """-> the answer's token ids (without EOS)."""
        model, llm = self.model, self.model.llm
        pixels = torch.from_numpy(preprocess(frame_bgr, model.cfg.image_size)[None])
        box_t = None
        if model.cfg.object_tokens:
            box_t = torch.as_tensor(np.asarray(boxes if boxes is not None else np.zeros((0, 4)), np.float32))[None]
        ids = torch.from_numpy(self.tokenizer.encode_prompt(prompt)[None])
        x = torch.cat([model.visual_embeds(pixels, box_t), llm.embed(ids)], dim=1)
        conv, ssm = self.state if (self.mode == "continuous" and self.state is not None) else llm.empty_state(1)
        logits, conv, ssm = llm.forward_embeds(x, conv, ssm, last_only=True)
        logits = logits[:, -1]
        out: list[int] = []
        eos = model.cfg.eos_token_id
        for i in range(max_new_tokens):
            token = int(logits[0].argmax())
            if token == eos:
                break
            out.append(token)
            if i + 1 < max_new_tokens or self.mode == "continuous":
                logits, conv, ssm = llm.step(torch.tensor([token]), conv, ssm)
        self.state = (conv, ssm)
        return out
