"""``cobra-edge export``: a preset with random weights, or a checkpoint from local files, to an artifact."""

from __future__ import annotations

from pathlib import Path

from .memory import ProgressLines, check_memory
from .model import CobraModel, build_random
from .onnx_export import ExportResult, export_model


def _export_with_progress(model: CobraModel, out, tokenizer, overwrite: bool, show_progress: bool,
                          precisions=("fp32",)) -> ExportResult:
    say = ProgressLines(f"export {model.cfg.name}", enabled=show_progress)
    result = export_model(model, out, tokenizer=tokenizer, progress=say, overwrite=overwrite, precisions=precisions)
    say(f"done: {result.out_dir}")
    return result


def export_preset(name: str, out: str | Path, seed: int = 0, overwrite: bool = False,
                  show_progress: bool = True, precisions=("fp32",)) -> ExportResult:
    from .config import preset

    cfg = preset(name)
    check_memory(cfg, f"preset {name!r}", precisions)  # before the model is built: too large fails here, named
    say = ProgressLines(f"export {name}", enabled=show_progress)
    say("building the model (random weights)")
    return _export_with_progress(build_random(cfg, seed=seed), out, None, overwrite, show_progress, precisions)


def export_checkpoint(checkpoint: str | Path, out: str | Path, vision_weights: list[str] | None = None,
                      preset_name: str | None = None, tokenizer: str | Path | None = None,
                      overwrite: bool = False, show_progress: bool = True, precisions=("fp32",)) -> ExportResult:
    from .loaders import build_from_checkpoint

    model, tok = build_from_checkpoint(checkpoint, vision_weights, preset_name, tokenizer)
    return _export_with_progress(model, out, tok, overwrite, show_progress, precisions)
