"""``cobra-edge export``: a preset with random weights, or a checkpoint from local files, to an artifact."""

from __future__ import annotations

from pathlib import Path

from .memory import ProgressLines, check_memory
from .model import CobraModel, build_random
from .onnx_export import ExportResult, export_model


def _export_with_progress(model: CobraModel, out, tokenizer, overwrite: bool, show_progress: bool,
                          precisions=("fp32",), weights_source: dict | None = None,
                          heads: str | Path | None = None, keep_float: tuple[str, ...] = ()) -> ExportResult:
    say = ProgressLines(f"export {model.cfg.name}", enabled=show_progress)
    loaded, heads_source = (), None
    if heads is not None:
        from .heads import load_heads
        from .weights import sha256

        loaded, record = load_heads(heads)
        embedded = embedded_heads()
        heads_source = {"source": "trained" if embedded and Path(heads).resolve() == embedded.resolve() else "file",
                        "path": str(Path(heads).resolve()), "sha256": sha256(heads),
                        "record": {k: v for k, v in record.items() if k != "curve"}}
        say(f"heads: {', '.join(h.cfg.name for h in loaded)} from {heads}")
    result = export_model(model, out, tokenizer=tokenizer, progress=say, overwrite=overwrite, precisions=precisions,
                          weights_source=weights_source, heads=tuple(loaded), heads_source=heads_source,
                          keep_float=keep_float)
    say(f"done: {result.out_dir}")
    return result


def export_preset(name: str, out: str | Path, seed: int = 0, overwrite: bool = False,
                  show_progress: bool = True, precisions=("fp32",), heads=None, keep_float=()) -> ExportResult:
    import sys

    from edge.provenance import RANDOM_WARNING

    from .config import preset

    cfg = preset(name)
    check_memory(cfg, f"preset {name!r}", precisions)  # before the model is built: too large fails here, named
    print(RANDOM_WARNING.format(what=f"exporting {name} with"), file=sys.stderr)
    say = ProgressLines(f"export {name}", enabled=show_progress)
    say("building the model (random weights)")
    return _export_with_progress(build_random(cfg, seed=seed), out, None, overwrite, show_progress, precisions,
                                 weights_source={"source": "random", "seed": seed}, heads=heads, keep_float=keep_float)


def export_checkpoint(checkpoint: str | Path, out: str | Path, vision_weights: list[str] | None = None,
                      preset_name: str | None = None, tokenizer: str | Path | None = None,
                      overwrite: bool = False, show_progress: bool = True, precisions=("fp32",),
                      heads=None, keep_float=()) -> ExportResult:
    from .loaders import build_from_checkpoint

    model, tok = build_from_checkpoint(checkpoint, vision_weights, preset_name, tokenizer)
    return _export_with_progress(model, out, tok, overwrite, show_progress, precisions,
                                 weights_source={"source": "checkpoint", "path": str(Path(checkpoint).resolve())},
                                 heads=heads, keep_float=keep_float)


def embedded_heads() -> Path | None:
    """The embedded default's action heads (export/trained/tiny-heads.safetensors), when the package has them."""
    from .weights import EMBEDDED

    path = EMBEDDED.with_name(EMBEDDED.stem + "-heads.safetensors")
    return path if path.is_file() else None


def trained_weights_entry(path: str | Path | None, record: dict) -> dict:
    """The manifest's ``weights`` for a checkpoint of cobra-edge train: ``trained`` for the embedded default,
    ``checkpoint`` for any other file; the record without its curve."""
    from .weights import EMBEDDED, sha256

    path = Path(path or EMBEDDED).resolve()
    short = {k: v for k, v in record.items() if k != "curve"}
    if path == EMBEDDED.resolve():
        return {"source": "trained", "file": f"export/trained/{EMBEDDED.name}", "sha256": sha256(path), "record": short}
    return {"source": "checkpoint", "path": str(path), "sha256": sha256(path), "record": short}


def export_trained(out: str | Path, weights: str | Path | None = None, overwrite: bool = False,
                   show_progress: bool = True, precisions=("fp32",), heads=None, keep_float=()) -> ExportResult:
    """Export a checkpoint written by ``cobra-edge train`` (export/weights.py), or the embedded default (with its
    embedded action heads unless ``heads`` names others)."""
    import tempfile

    from .weights import EMBEDDED, load_trained

    model, tokenizer_json, record = load_trained(weights or EMBEDDED)
    with tempfile.TemporaryDirectory() as tmp:
        tok = Path(tmp) / "tokenizer.json"
        tok.write_text(tokenizer_json)
        return _export_with_progress(model, out, tok, overwrite, show_progress, precisions,
                                     weights_source=trained_weights_entry(weights, record),
                                     heads=heads if heads is not None or weights is not None else embedded_heads(),
                                     keep_float=keep_float)
