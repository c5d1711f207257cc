"""``cobra-edge export``: a preset with random weights, or a checkpoint from local files, to an artifact."""

from __future__ import annotations

from pathlib import Path

from .graphs import graph_defs
from .model import CobraModel, build_random
from .onnx_export import ExportResult, export_model
from .precision import check_precisions


def _export_with_progress(model: CobraModel, out, tokenizer, overwrite: bool, show_progress: bool,
                          precisions=("fp32",)) -> ExportResult:
    from edge.progress import Progress

    # export + check per graph, one per variant, tokenizer, manifest
    steps = 2 * len(graph_defs(model)) + len(check_precisions(precisions)) + 2
    bar = Progress(steps, label=f"export {model.cfg.name}") if show_progress else None

    def say(msg: str) -> None:
        if bar:
            bar.update(1, msg)

    try:
        return export_model(model, out, tokenizer=tokenizer, progress=say, overwrite=overwrite, precisions=precisions)
    finally:
        if bar:
            bar.close()


def export_preset(name: str, out: str | Path, seed: int = 0, overwrite: bool = False,
                  show_progress: bool = True, precisions=("fp32",)) -> ExportResult:
    from .config import preset

    return _export_with_progress(build_random(preset(name), seed=seed), out, None, overwrite, show_progress,
                                 precisions)


def export_checkpoint(checkpoint: str | Path, out: str | Path, vision_weights: list[str] | None = None,
                      preset_name: str | None = None, tokenizer: str | Path | None = None,
                      overwrite: bool = False, show_progress: bool = True, precisions=("fp32",)) -> ExportResult:
    from .loaders import build_from_checkpoint

    model, tok = build_from_checkpoint(checkpoint, vision_weights, preset_name, tokenizer)
    return _export_with_progress(model, out, tok, overwrite, show_progress, precisions)
