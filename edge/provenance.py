"""Where an artifact's weights came from, as its manifest records them (``weights_source``; ``weights`` is the
weights file), and the warning that random weights deserve.

    {"source": "random", "seed": 0}                           build_random: every answer is noise
    {"source": "trained", "record": {...}, "sha256": ...}     the embedded default, trained by cobra-edge train
    {"source": "checkpoint", "path": "...", "record": {...}}  a checkpoint from local files (ours or another project's)

Artifacts exported before this field existed read as ``unknown``.
"""

from __future__ import annotations

from .manifest import Manifest

SOURCES = ("random", "trained", "checkpoint", "unknown")
RANDOM_WARNING = ("warning: {what} random weights: every answer will be noise (export the trained default with "
                  "'cobra-edge export --trained', or real weights with --checkpoint)")


def weights_info(manifest: Manifest) -> dict:
    info = manifest.raw.get("weights_source")
    return info if isinstance(info, dict) and info.get("source") in SOURCES else {"source": "unknown"}


def describe(info: dict) -> str:
    """One line: 'random (seed 0)', 'trained: tiny, seed 0, 1400 steps, 17.9 min, ...', 'checkpoint: PATH'."""
    source = info.get("source", "unknown")
    if source == "random":
        return f"random (seed {info.get('seed', '?')}): answers are noise"
    record = info.get("record") or {}
    if source == "trained":
        acc = (record.get("validation") or {}).get("accuracy") or {}
        accs = ", ".join(f"{f} {100 * a:.0f}%" for f, a in acc.items())
        pre = record.get("vision_pretraining") or {}
        stages = record.get("stages") or []
        if stages:  # a staged recipe (export/train_recipe.py): the last stage continued the ones before it
            return (f"trained: {record.get('model', '?')}, seed {record.get('seed', '?')}, {len(stages)} stages "
                    f"({', '.join(stages)}), {record.get('minutes_in_all', '?')} min in all; the last "
                    f"{record.get('steps', '?')} steps / {record.get('minutes', '?')} min"
                    + (f"; validation {accs}" if accs else ""))
        return (f"trained: {record.get('model', '?')}, seed {record.get('seed', '?')}, {record.get('steps', '?')} steps, "
                f"{record.get('minutes', '?')} min"
                + (f" after {pre.get('steps', '?')} steps / {pre.get('minutes', '?')} min of vision pretraining" if pre else "")
                + (f"; validation {accs}" if accs else ""))
    if source == "checkpoint":  # the sha256 names the weights where the path (often a scratch one) will not
        digest = info.get("sha256")
        return f"checkpoint: {info.get('path', '?')}" + (f" (sha256 {digest[:16]})" if digest else "")
    return "unknown (exported before cobra-edge recorded where weights come from)"


def random_warning(manifest: Manifest, what: str = "this artifact has") -> str | None:
    """The one-line warning for an artifact of random weights, else None."""
    return RANDOM_WARNING.format(what=what) if weights_info(manifest)["source"] == "random" else None
