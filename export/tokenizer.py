"""Tokenizers for artifacts: a built-in byte-level BPE for tiny models, shaped like GPT-NeoX's
(``<|endoftext|>`` is id 0 and the EOS), trained on a small embedded corpus so no download is needed."""

from __future__ import annotations

from pathlib import Path

_CORPUS = """\
<|user|>
What is in the image?<|endoftext|>
<|assistant|>
A robot arm is holding a red cup above the table.
Is the gripper holding the cup? Yes. No. The cup is on the left.
Describe the scene. There is a person walking in a hallway near a door.
How many boxes are on the shelf? Three boxes, one blue and two green.
Is the path clear? The path is blocked by a chair. Stop. Turn left. Turn right. Move forward.
A circle and a square move across the frame; the background is dark gray.
What color is the object? It is yellow. It is white. It is black.
The camera sees a kitchen, a bottle, a bowl and a knife on the counter.
"""



def prompt_tokenizer(tokenizer_json: str, cfg, cache_size: int = 64):
    """The runtime's PromptTokenizer (edge/tokenizer.py) for a checkpoint's tokenizer.json text and its model config
    (prompt template, EOS id): what training, the heads and the probes use to lay prompts out as the runtime does."""
    import tempfile

    from edge.tokenizer import PromptTokenizer

    with tempfile.TemporaryDirectory() as tmp:  # read at construction: the file is not needed afterwards
        (Path(tmp) / "tokenizer.json").write_text(tokenizer_json)
        return PromptTokenizer(Path(tmp) / "tokenizer.json", cfg.prompt_template, cfg.eos_token_id, cache_size)

def world_corpus() -> str:
    """The synthetic world's questions and answers (edge/world), so that its words are whole tokens: every
    template with every colour and shape, and every answer alone on a line, as the model writes it after the
    chat template's final newline."""
    from edge.world import ANSWERS, TEMPLATES
    from edge.world.spec import COLOURS, SHAPES

    lines = {t.format(colour=c, shape=k) for t in TEMPLATES.values() for c in COLOURS for k in SHAPES}
    lines |= {a for answers in ANSWERS.values() for a in answers}
    return "\n".join(sorted(lines)) + "\n"


def build_tiny_tokenizer(vocab_size: int, eos_token: str = "<|endoftext|>"):
    """A byte-level BPE of at most ``vocab_size`` tokens, trained on a small embedded corpus and the synthetic
    world's questions and answers; ``eos_token`` is id 0. Deterministic."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[eos_token],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([_CORPUS] * 4 + [world_corpus()] * 4, trainer=trainer)
    if tok.token_to_id(eos_token) != 0:
        raise RuntimeError(f"tokenizer build: {eos_token!r} did not get id 0")
    if tok.get_vocab_size() > vocab_size:
        raise RuntimeError(f"tokenizer build: {tok.get_vocab_size()} tokens > vocab_size {vocab_size}")
    return tok


def write_tokenizer(out_dir: Path, vocab_size: int, source: str | Path | None = None) -> Path:
    """Copy the language model's ``tokenizer.json`` (``source``) or build the tiny one into ``out_dir``."""
    dst = Path(out_dir) / "tokenizer.json"
    if source is not None:
        from tokenizers import Tokenizer

        Tokenizer.from_file(str(source))  # refuse a file that is not a tokenizer before copying it
        dst.write_bytes(Path(source).read_bytes())
    else:
        build_tiny_tokenizer(vocab_size).save(str(dst))
    return dst
