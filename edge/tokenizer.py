"""The prompt side: the model's chat template and its ``tokenizers`` tokenizer."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import ManifestError, PromptError

if TYPE_CHECKING:
    from .manifest import Manifest


def check_prompt(prompt, where: str = "prompt") -> str:
    """``prompt`` if it is text a tokenizer can take: a str that encodes as UTF-8 (a lone surrogate, e.g. from
    invalid bytes on a command line, does not). Else PromptError naming ``where``."""
    if not isinstance(prompt, str):
        raise PromptError(f"{where} must be a str, got {type(prompt).__name__}")
    try:
        prompt.encode("utf-8")
    except UnicodeEncodeError as e:
        raise PromptError(f"{where} is not valid text: {prompt[e.start:e.end]!r} at position {e.start} is not a "
                          "character (invalid UTF-8 input?)") from None
    return prompt


class PromptTokenizer:
    """Formats a prompt with the template (Cobra: Zephyr, ``<|user|>\\n{prompt}<|endoftext|>\\n<|assistant|>\\n``)
    and encodes it; the template's special tokens are matched as such, the user's text never: a prompt that holds
    ``<|endoftext|>`` is encoded as those characters, so it cannot end its turn or forge another. Prompts without
    special-token text encode exactly as the whole templated string would. Encodings are cached per prompt."""

    def __init__(self, path: str | Path, template: str, eos_token_id: int, cache_size: int = 64):
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(path))
        self._literal = Tokenizer.from_file(str(path))  # the user's text: special-token strings are plain text
        self._literal.encode_special_tokens = True
        self.template = template
        self._prefix, _, self._suffix = template.partition("{prompt}")
        self.eos_token_id = eos_token_id
        self._special_ids = {i for i, t in self.tokenizer.get_added_tokens_decoder().items() if t.special}
        self._template_specials = self._count_special(template.replace("{prompt}", ""))
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._cache_size = cache_size

    @classmethod
    def for_manifest(cls, manifest: "Manifest") -> "PromptTokenizer":
        """The artifact's tokenizer, checked against the model: it loads, its ids and the EOS id fit the
        vocabulary (the step graph's logits), and the template encodes. Else ManifestError naming file and field."""
        path, mpath = manifest.tokenizer_path, manifest.root / "manifest.json"
        try:
            tok = cls(path, manifest.prompt_template, manifest.eos_token_id)
        except Exception as e:  # tokenizers raises a bare Exception for a malformed file
            raise ManifestError(f"{path}: tokenizer.file cannot be loaded as a tokenizers JSON file: {e}") from None
        vocab = manifest.graphs["step"].outputs["logits"].shape[-1]
        if isinstance(vocab, int):
            if not 0 <= manifest.eos_token_id < vocab:
                raise ManifestError(f"{mpath}: tokenizer.eos_token_id {manifest.eos_token_id} is outside the model's "
                                    f"vocabulary [0, {vocab}) (graphs.step.outputs.logits)")
            top = max(tok.tokenizer.get_vocab(with_added_tokens=True).values(), default=-1)
            if top >= vocab:
                raise ManifestError(f"{path}: tokenizer.file has token ids up to {top}, but the model's vocabulary "
                                    f"has {vocab} rows (graphs.step.outputs.logits): a different model's tokenizer?")
        try:
            tok.encode_prompt("What is in the image?")
        except Exception as e:
            raise ManifestError(f"{mpath}: prompt_template cannot be encoded by {path.name}: {e}") from None
        return tok

    def _count_special(self, text: str) -> int:
        return sum(i in self._special_ids for i in self.tokenizer.encode(text, add_special_tokens=False).ids)

    def encode_prompt(self, prompt: str, where: str = "prompt") -> np.ndarray:
        """prompt text -> input_ids int64 [L] of the templated prompt. PromptError (naming ``where``) for a prompt
        that is not text."""
        ids = self._cache.get(prompt) if isinstance(prompt, str) else None
        if ids is None:
            check_prompt(prompt, where)
            enc = self.tokenizer.encode(self.template.replace("{prompt}", prompt), add_special_tokens=False).ids
            if sum(i in self._special_ids for i in enc) != self._template_specials:  # the prompt made one: neutralise
                enc = (self.tokenizer.encode(self._prefix, add_special_tokens=False).ids
                       + self._literal.encode(prompt, add_special_tokens=False).ids
                       + self.tokenizer.encode(self._suffix, add_special_tokens=False).ids)
            ids = np.asarray(enc, dtype=np.int64)
            self._cache[prompt] = ids
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(prompt)
        return ids

    def encode_text(self, text: str, where: str = "text") -> np.ndarray:
        """Plain text (no template; special-token strings taken literally) -> ids int64 [L], e.g. a candidate
        answer to score."""
        check_prompt(text, where)
        return np.asarray(self._literal.encode(text, add_special_tokens=False).ids, dtype=np.int64)

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)
