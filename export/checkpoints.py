"""Reading checkpoints from local files: safely, strictly, with errors that name the file and the problem.

Pickled files (.bin, .pt) are read only with ``torch.load(weights_only=True)``: no code in a checkpoint runs.
A load is all or nothing: missing keys, unexpected keys and shape conflicts are listed (first few of each).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

SHOW = 5  # keys listed per kind of mismatch


class CheckpointError(ValueError):
    """A checkpoint cannot be read or does not fit the model (names the file and what is wrong)."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors file, or of a torch.save'd .bin/.pt/.pth (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    from safetensors.torch import load_file

    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:  # parsers of corrupt bytes raise any type (SafetensorError, IndexError, KeyError...)
        raise CheckpointError(f"{path}: cannot be read as a checkpoint (corrupt or truncated?): {e}") from e
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, expected a dict of tensors")
    return dict(obj)


def read_safetensors(path: str | Path, what: str = "file") -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """-> (metadata, tensors) of a .safetensors file (no code runs); a missing or unreadable file is a
    CheckpointError naming it (``what``: the kind of file the message calls it)."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such {what}")
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}, {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # the parser of corrupt bytes raises its own types
        raise CheckpointError(f"{path}: cannot be read as safetensors (corrupt or truncated?): {e}") from e


def read_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: not valid JSON: {e}") from e
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return data


def _first(keys, n=SHOW) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more


def check_fits(own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], source: str, kind: str,
               ignore_unexpected: tuple[str, ...] = ()) -> None:
    """Every tensor of ``own`` (a module's state dict, possibly on the meta device: shapes only) must be in
    ``state`` with its shape; nothing else may be, but keys starting with ``ignore_unexpected``. Else
    CheckpointError listing what is missing, unexpected and of another shape (first few of each)."""
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own and not k.startswith(ignore_unexpected)]
    conflicts = [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or conflicts:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing: {_first(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected: {_first(unexpected)}")
        if conflicts:
            parts.append(f"{len(conflicts)} shape conflicts: {_first(conflicts)}")
        raise CheckpointError(f"{source}: does not fit {kind}: " + "; ".join(parts))


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str,
                ignore_unexpected: tuple[str, ...] = ()) -> None:
    """Copy ``state`` into ``module``; every parameter must be present with the right shape.

    ``ignore_unexpected``: key prefixes the checkpoint may carry that this model deliberately does not use
    (e.g. vision blocks after the feature block). Anything else unexpected is an error.
    """
    own = module.state_dict()
    check_fits(own, state, source, type(module).__name__, ignore_unexpected)
    with torch.no_grad():
        for k, t in own.items():
            t.copy_(state[k].to(t.dtype))
