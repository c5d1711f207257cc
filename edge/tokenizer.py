"""The prompt side: the model's chat template and its ``tokenizers`` tokenizer."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np


class PromptTokenizer:
    """Formats a prompt with the template (Cobra: Zephyr, ``<|user|>\\n{prompt}<|endoftext|>\\n<|assistant|>\\n``)
    and encodes it; the template's special tokens are matched as such. Encodings are cached per prompt."""

    def __init__(self, path: str | Path, template: str, eos_token_id: int, cache_size: int = 64):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(path))
        self.template = template
        self.eos_token_id = eos_token_id
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    def encode_prompt(self, prompt: str) -> np.ndarray:
        """prompt text -> input_ids int64 [L] of the templated prompt."""
        if not isinstance(prompt, str):
            raise TypeError(f"prompt must be a str, got {type(prompt).__name__}")
        ids = self._cache.get(prompt)
        if ids is None:
            text = self.template.replace("{prompt}", prompt)
            ids = np.asarray(self.tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)
            self._cache[prompt] = ids
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(prompt)
        return ids

    def encode_text(self, text: str) -> np.ndarray:
        """Plain text (no template) -> ids int64 [L], e.g. a candidate answer to score."""
        return np.asarray(self.tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)
