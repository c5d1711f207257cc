"""Trained weights: one safetensors file holding the model's tensors, its config and its tokenizer, beside a JSON
training record; and the embedded default (export/trained/tiny.safetensors), committed with its record.

    save_trained(model, "run/tiny.safetensors", tokenizer_json, record)   # + run/tiny.json (the record)
    model, tokenizer_json, record = load_trained("run/tiny.safetensors")

The tied LM head is stored once (as the embedding). Loading is strict (every tensor, every shape) and safe
(safetensors: no code runs).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .checkpoints import CheckpointError, load_strict, read_safetensors
from .config import ModelConfig
from .model import CobraModel

FORMAT = "cobra-edge-trained/1"
EMBEDDED = Path(__file__).resolve().parent / "trained" / "tiny.safetensors"
TIED = "llm.lm_head.weight"


def record_path(weights: str | Path) -> Path:
    return Path(weights).with_suffix(".json")


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def save_trained(model: CobraModel, path: str | Path, tokenizer_json: str, record: dict) -> Path:
    """Write the weights (float32) with config and tokenizer in the metadata, and ``record`` (plus the weights'
    sha256) as JSON beside them; -> the weights' path."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().float().contiguous() for k, v in model.state_dict().items() if k != TIED}
    save_file(tensors, str(path), metadata={"format": FORMAT, "config": json.dumps(model.cfg.to_dict()),
                                            "tokenizer": tokenizer_json})
    record = {**record, "weights": {"file": path.name, "sha256": sha256(path), "bytes": path.stat().st_size}}
    record_path(path).write_text(json.dumps(record, indent=2) + "\n")
    return path


def load_trained(path: str | Path) -> tuple[CobraModel, str, dict]:
    """-> (model in eval mode, tokenizer.json text, training record ({} when no record is beside the file))."""
    path = Path(path)
    meta, tensors = read_safetensors(path)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cobra-edge trained checkpoint (metadata format {meta.get('format')!r}, "
                              f"expected {FORMAT!r}); checkpoints of other projects go through --checkpoint")
    try:
        cfg = ModelConfig.from_dict(json.loads(meta["config"]))
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: metadata 'config' is not a model config: {e}") from e
    if "tokenizer" not in meta:
        raise CheckpointError(f"{path}: metadata has no 'tokenizer'")
    model = CobraModel(cfg)
    if "llm.backbone.embedding.weight" in tensors:
        tensors[TIED] = tensors["llm.backbone.embedding.weight"]
    load_strict(model, tensors, str(path))
    rec = record_path(path)
    record = json.loads(rec.read_text()) if rec.is_file() else {}
    return model.eval(), meta["tokenizer"], record
