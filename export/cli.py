"""``cobra-edge export``: build a model (a preset with random weights) and write its artifact directory."""

from __future__ import annotations

from pathlib import Path

from .config import preset
from .graphs import graph_defs
from .model import build_random
from .onnx_export import ExportResult, export_model


def export_preset(name: str, out: str | Path, seed: int = 0, overwrite: bool = False,
                  show_progress: bool = True) -> ExportResult:
    from edge.progress import Progress

    model = build_random(preset(name), seed=seed)
    steps = 2 * len(graph_defs(model)) + 2  # export + check per graph, tokenizer, manifest
    bar = Progress(steps, label=f"export {name}", force=False) if show_progress else None

    def say(msg: str) -> None:
        if bar:
            bar.update(1, msg)

    try:
        return export_model(model, out, progress=say, overwrite=overwrite)
    finally:
        if bar:
            bar.close()
