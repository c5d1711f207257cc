"""The embedded trained tiny model's artifact, exported once into the user's cache and reused: what
``cobra-edge demo`` and ``cobra-edge loop --sim`` run when no artifact is given. Exporting needs the export extra
(torch); the runtime itself does not, so nothing here imports torch until an export is needed."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def need_export():
    """export.cli, or SystemExit naming the extra to install."""
    try:
        from export import cli as export_cli  # imports torch, onnx, onnxscript
    except ImportError as e:
        raise SystemExit(
            f"cobra-edge: exporting needs the export extra (torch, onnx, onnxscript): "
            f"pip install -c constraints.txt '.[export]'  ({e})"
        )
    return export_cli


def default_cache_dir() -> Path:
    """$COBRA_EDGE_CACHE, or ~/.cache/cobra-edge: exports and results kept outside the repository."""
    base = os.environ.get("COBRA_EDGE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "cobra-edge")
    return Path(base)


def embedded_artifact(directory=None, precisions=("fp32",), say=print, unchecked_ok: bool = False) -> Path:
    """The trained tiny model exported in ``directory`` (default: the cache's tiny-trained), exported now when
    missing or stale (another exporter revision, other weights, a missing precision). ``unchecked_ok``: without the
    export extra, use an existing export as it is (with a line on stderr) instead of failing."""
    directory = Path(directory) if directory else default_cache_dir() / "tiny-trained"
    try:
        export_cli = need_export()
    except SystemExit:
        if unchecked_ok and (directory / "manifest.json").is_file():
            print(f"using the tiny model exported in {directory}, unchecked (the export extra is not installed)",
                  file=sys.stderr)
            return directory
        raise
    from export.onnx_export import EXPORT_REVISION
    from export.weights import EMBEDDED, load_trained, sha256

    from .manifest import Manifest, artifact_matches

    model, _, _ = load_trained(EMBEDDED)
    heads = export_cli.embedded_heads()

    def sources_match() -> bool:  # read (and hash-checked) once, only when the rest already matches
        raw = Manifest.load(directory).raw
        return (raw.get("weights_source", {}).get("sha256") == sha256(EMBEDDED)
                and raw.get("heads", {}).get("source", {}).get("sha256") == (sha256(heads) if heads else None))

    if (artifact_matches(directory, model.cfg.to_dict(), revision=EXPORT_REVISION, precisions=precisions)
            and sources_match()):
        say(f"using the tiny model exported in {directory} (trained weights)")
    else:
        say(f"exporting the trained tiny model ({EMBEDDED.name}, committed with its training record) to {directory} ...")
        export_cli.export_trained(directory, None, overwrite=True, precisions=precisions)
    return directory
