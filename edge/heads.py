"""Action heads at run time: the manifest's ``heads`` section, and reading a batch's head outputs from the prefill's
hidden states (docs/architecture.md, "Heads").

An artifact with heads has a prefill graph that also outputs ``hidden_states`` [B, L, d_model] (the final normed
hidden state at every position) and one graph per head, ``head_<name>``: ``hidden`` [B, P, d_model] (the hidden
states at the head's P named positions, in order) -> ``outputs`` [B, n] float32, each column a named value with a
unit and a range. Positions: ``image`` (every visual token of the frame, in order: the head sees where in the frame
things are), ``image_end`` (the last visual token: the state has seen the image and nothing else) and ``last`` (the
last prompt token, where the answer's first token is predicted). A head pools its P vectors by their ``mean``
(RoboMamba's) or reads them ``concat``enated; either happens inside its graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from engines.base import TensorSpec

from .errors import ManifestError

POSITIONS = ("image", "image_end", "last")  # every name a head may read, in the order a head lists them
DEFAULT_POSITIONS = ("image_end", "last")  # RoboMamba's pair
POOLS = ("mean", "concat")


def width(positions, image_tokens: int) -> int:
    """How many hidden vectors a head reads: ``image`` counts ``image_tokens``, any other position one."""
    return sum(image_tokens if p == "image" else 1 for p in positions)


@dataclass(frozen=True)
class HeadValue:
    name: str
    unit: str
    lo: float
    hi: float
    description: str = ""


@dataclass
class HeadEntry:
    name: str
    graph: str  # head_<name>: the engine's name in the runtime
    file: str
    path: Path
    positions: tuple[str, ...]
    image_tokens: int  # the frame's visual tokens the ``image`` position holds (0 when the head does not read it)
    values: tuple[HeadValue, ...]
    inputs: dict[str, TensorSpec]
    outputs: dict[str, TensorSpec]
    custom_ops: tuple[str, ...] = ()
    pool: str = "mean"  # how the graph pools its P vectors (it does so itself; the runtime only reports it)

    def reads(self) -> str:
        """'image[16] + last (concat)': what the head reads, for people."""
        names = " + ".join(f"image[{self.image_tokens}]" if p == "image" else p for p in self.positions)
        return f"{names} ({self.pool})"


def parse_heads(mpath: Path, raw: dict, prefill_outputs: dict, d_model: int | None,
                listed: Callable[[str, str], Path]) -> tuple[list[HeadEntry], dict]:
    """The manifest's ``heads`` (absent: none) -> (entries, source). Refuses names used twice, unknown positions,
    tensors that disagree with the positions and values, and a prefill graph without ``hidden_states``."""
    section = raw.get("heads")
    if section is None:
        return [], {}
    if not isinstance(section, dict) or not isinstance(section.get("list"), list):
        raise ManifestError(f"{mpath}: heads: expected {{'source': ..., 'list': [...]}}, got {type(section).__name__}")
    hidden = prefill_outputs.get("hidden_states")
    if hidden is None:
        raise ManifestError(f"{mpath}: heads are listed but graphs.prefill has no 'hidden_states' output to feed them")
    entries, seen = [], set()
    for i, h in enumerate(section["list"]):
        where = f"heads.list[{i}]"
        try:
            name, file, positions = h["name"], h["file"], tuple(h["positions"])
            image_tokens = int(h.get("image_tokens", 0))
            values = tuple(HeadValue(v["name"], v["unit"], float(v["range"][0]), float(v["range"][1]),
                                     v.get("description", "")) for v in h["values"])
            ins = {n: TensorSpec.from_dict(n, s) for n, s in h["inputs"].items()}
            outs = {n: TensorSpec.from_dict(n, s) for n, s in h["outputs"].items()}
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise ManifestError(f"{mpath}: {where}: expected name, file, positions, values [{{name, unit, range}}], "
                                f"inputs, outputs: {e!r}") from None
        bad = [p for p in positions if p not in POSITIONS]
        if bad or not positions or len(set(positions)) != len(positions):
            raise ManifestError(f"{mpath}: {where}: positions {list(positions)}; each one of {list(POSITIONS)}, once")
        if ("image" in positions) != (image_tokens > 0):
            raise ManifestError(f"{mpath}: {where}: positions {list(positions)} with image_tokens {image_tokens}: the "
                                f"'image' position needs image_tokens > 0 (the frame's visual tokens), and only it")
        if h.get("pool", "mean") not in POOLS:
            raise ManifestError(f"{mpath}: {where}: pool {h.get('pool')!r}; one of {list(POOLS)}")
        for n in (name, *(v.name for v in values)):
            if n in seen:
                raise ManifestError(f"{mpath}: {where}: name {n!r} used twice across heads and their values")
            seen.add(n)
        P = width(positions, image_tokens)
        want_in = TensorSpec("hidden", "float32", ("B", P, d_model if d_model else hidden.shape[-1]))
        want_out = TensorSpec("outputs", "float32", ("B", len(values)))
        if "hidden" not in ins or not ins["hidden"].matches(want_in):
            raise ManifestError(f"{mpath}: {where}.inputs.hidden must be {want_in.describe()} ({P} hidden vectors "
                                f"at {list(positions)}), declares {ins.get('hidden') and ins['hidden'].describe()}")
        if "outputs" not in outs or not outs["outputs"].matches(want_out):
            raise ManifestError(f"{mpath}: {where}.outputs.outputs must be {want_out.describe()} ({len(values)} "
                                f"values), declares {outs.get('outputs') and outs['outputs'].describe()}")
        entries.append(HeadEntry(name, f"head_{name}", file, listed(file, f"{where}.file"), positions, image_tokens,
                                 values, ins, outs, pool=h.get("pool", "mean")))
    return entries, section.get("source", {})


def hidden_at(hidden: np.ndarray, image_tokens: int) -> dict[str, np.ndarray]:
    """One row's prefill hidden states [L, d_model] -> {position: [k, d_model]}: ``image`` = the frame's visual
    tokens [image_tokens, d_model] and ``image_end`` = the last of them (neither when this prefill held no image: a
    prompt answered from a fork), ``last`` = the last token."""
    out = {"last": hidden[-1:]}
    if image_tokens > 0:
        out["image"] = hidden[:image_tokens]
        out["image_end"] = hidden[image_tokens - 1:image_tokens]
    return out


def _reads(head: HeadEntry, row: dict[str, np.ndarray]) -> bool:
    """The row has every position the head reads, ``image`` with the head's token count."""
    return all(q in row for q in head.positions) and (
        "image" not in head.positions or row["image"].shape[0] == head.image_tokens)


def run_heads(heads: list[HeadEntry], engines: dict, hidden: list[dict[str, np.ndarray]]
              ) -> list[dict[str, float] | None]:
    """Every head once over the rows that have its positions (``hidden_at`` per row) -> per row its values
    {name: float} from every head, or None for a row lacking a position some head reads (no image in its prefill;
    or another count of visual tokens than the head was made for, which export refuses for models whose count
    varies)."""
    out: list[dict[str, float] | None] = [{} for _ in hidden]
    for head in heads:
        rows = [j for j, h in enumerate(hidden) if _reads(head, h)]
        for j in set(range(len(hidden))) - set(rows):
            out[j] = None
        if not rows:
            continue
        x = np.stack([np.concatenate([hidden[j][q] for q in head.positions]) for j in rows]).astype(np.float32)
        values = engines[head.graph].run({"hidden": x})["outputs"]
        for k, j in enumerate(rows):
            if out[j] is not None:
                out[j].update({v.name: float(values[k, c]) for c, v in enumerate(head.values)})
    return out
