"""Action heads: small MLPs that read the Mamba LM's final (normed) hidden states at named positions and predict
named, bounded float values (RoboMamba's recipe: the backbone frozen, the heads ~0.1 % of its parameters).

    head = ActionHead(HeadConfig("target", d_model=96, outputs=(HeadOutput("bearing", "1", -1, 1),
                                                                  HeadOutput("distance", "m", 0, 4))))
    values = head(hidden)            # hidden [B, P, d_model] at the head's positions -> [B, 2] within the ranges
    save_heads([head], "heads.safetensors");  heads = load_heads("heads.safetensors")

A head reads the hidden vectors at its ``positions``: "image" (every visual token of the frame, ``image_tokens`` of
them, in order), "image_end" (the last visual token) and "last" (the last prompt token). It pools them by their
``mean`` (RoboMamba averages the first token after the image and the last token) or reads them ``concat``enated
(P x d_model values: a head that must say *where* in the frame something is needs the tokens apart), then
in -> h/2 -> h/4 -> n (GELU between; h = d_model), and maps each output into its declared range with a sigmoid, so
a robot never receives a value outside what the head was trained for.

Checkpoint layout (safetensors; documented in docs/architecture.md, "Heads"): tensors
``heads.<name>.fc1.weight`` [h/2, in] (in = d_model for ``mean``, P x d_model for ``concat``), ``.fc1.bias`` [h/2], ``.fc2.weight`` [h/4, h/2], ``.fc2.bias`` [h/4],
``.out.weight`` [n, h/4], ``.out.bias`` [n]; metadata ``format`` = "cobra-edge-heads/1" and ``heads`` = a JSON list
of ``HeadConfig.to_dict()``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from edge.heads import DEFAULT_POSITIONS, POOLS, POSITIONS, HeadValue, width

from .checkpoints import CheckpointError, read_safetensors

FORMAT = "cobra-edge-heads/1"


# one named value: its unit (SI, or "1" for dimensionless) and the closed range [lo, hi] the head maps into; the
# runtime reads the same fields back from the manifest (edge/heads.py)
HeadOutput = HeadValue


@dataclass(frozen=True)
class HeadConfig:
    name: str
    d_model: int
    outputs: tuple[HeadOutput, ...]
    positions: tuple[str, ...] = DEFAULT_POSITIONS
    pool: str = "mean"  # or "concat"
    hidden: tuple[int, int] = field(default=(0, 0))  # MLP widths; (0, 0): RoboMamba's h/2, h/4
    image_tokens: int = 0  # the frame's visual tokens, when ``positions`` holds "image" (else 0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "outputs", tuple(o if isinstance(o, HeadOutput) else HeadOutput(**o)
                                                  for o in self.outputs))
        object.__setattr__(self, "positions", tuple(self.positions))
        hidden = tuple(self.hidden)  # a list when read back from JSON
        object.__setattr__(self, "hidden", (max(1, self.d_model // 2), max(1, self.d_model // 4))
                           if hidden == (0, 0) else hidden)
        if not self.name.isidentifier():
            raise ValueError(f"head name must be an identifier, got {self.name!r}")
        bad = [p for p in self.positions if p not in POSITIONS]
        if bad or not self.positions or len(set(self.positions)) != len(self.positions):
            raise ValueError(f"head {self.name!r}: positions {list(self.positions)}; each one of {list(POSITIONS)}, "
                             f"once")
        if ("image" in self.positions) != (self.image_tokens > 0):
            raise ValueError(f"head {self.name!r}: positions {list(self.positions)} with image_tokens "
                             f"{self.image_tokens}: the 'image' position needs image_tokens > 0, and only it")
        if self.pool not in POOLS:
            raise ValueError(f"head {self.name!r}: pool {self.pool!r}; one of {list(POOLS)}")
        if not self.outputs:
            raise ValueError(f"head {self.name!r} has no outputs")
        for o in self.outputs:
            if not o.name.isidentifier() or not o.lo < o.hi:
                raise ValueError(f"head {self.name!r}: output {o.name!r} needs an identifier name and lo < hi, "
                                 f"got [{o.lo}, {o.hi}]")

    @property
    def n_hidden(self) -> int:
        """P: the hidden vectors the head reads (``image`` counts ``image_tokens``)."""
        return width(self.positions, self.image_tokens)

    @property
    def in_features(self) -> int:
        return self.d_model * (self.n_hidden if self.pool == "concat" else 1)

    def to_dict(self) -> dict:
        return {**asdict(self), "outputs": [asdict(o) for o in self.outputs], "positions": list(self.positions),
                "hidden": list(self.hidden)}

    @classmethod
    def from_dict(cls, d: dict) -> "HeadConfig":
        return cls(**{**d, "outputs": tuple(HeadOutput(**o) for o in d["outputs"]),
                      "positions": tuple(d.get("positions", DEFAULT_POSITIONS)),
                      "hidden": tuple(d.get("hidden", (0, 0)))})


class ActionHead(nn.Module):
    def __init__(self, cfg: HeadConfig):
        super().__init__()
        self.cfg = cfg
        h1, h2 = cfg.hidden
        self.fc1 = nn.Linear(cfg.in_features, h1)
        self.fc2 = nn.Linear(h1, h2)
        self.out = nn.Linear(h2, len(cfg.outputs))
        self.register_buffer("lo", torch.tensor([o.lo for o in cfg.outputs], dtype=torch.float32), persistent=False)
        self.register_buffer("span", torch.tensor([o.hi - o.lo for o in cfg.outputs], dtype=torch.float32),
                             persistent=False)

    def raw(self, hidden: Tensor) -> Tensor:
        """hidden [B, P, d_model] -> pre-sigmoid logits [B, n]."""
        x = hidden.float().flatten(1) if self.cfg.pool == "concat" else hidden.float().mean(dim=1)
        return self.out(nn.functional.gelu(self.fc2(nn.functional.gelu(self.fc1(x)))))

    def forward(self, hidden: Tensor) -> Tensor:
        """hidden [B, P, d_model] (the hidden states at ``cfg.positions``, in order) -> values [B, n] float32, each
        column within its output's [lo, hi]."""
        return self.lo + self.span * torch.sigmoid(self.raw(hidden))


def build_heads(configs, seed: int = 0) -> list[ActionHead]:
    """Heads with deterministic random weights (export tests)."""
    torch.manual_seed(seed)
    return [ActionHead(c).eval() for c in configs]


def check_heads(heads: list[ActionHead], d_model: int, image_tokens: int | None = None) -> None:
    """Names unique (heads and outputs alike: the runtime flattens outputs into one dict), widths matching the LM's
    d_model, and a head reading ``image`` made for the model's count of visual tokens (``image_tokens``; None: the
    model's count varies, as with object tokens, and no head may read ``image``)."""
    seen: set[str] = set()
    for h in heads:
        if h.cfg.d_model != d_model:
            raise CheckpointError(f"head {h.cfg.name!r} reads d_model {h.cfg.d_model}, but the model's LM has "
                                  f"d_model {d_model}")
        if "image" in h.cfg.positions and h.cfg.image_tokens != image_tokens:
            raise CheckpointError(
                f"head {h.cfg.name!r} reads the 'image' position as {h.cfg.image_tokens} visual tokens, but the "
                + ("model's count of frame tokens varies (object tokens): such a model's heads can read "
                   "'image_end' and 'last' only" if image_tokens is None else
                   f"model gives {image_tokens} per frame"))
        for n in (h.cfg.name, *(o.name for o in h.cfg.outputs)):
            if n in seen:
                raise CheckpointError(f"head {h.cfg.name!r}: name {n!r} is used twice (heads and outputs must be "
                                      f"unique across an artifact's heads)")
        seen.update(o.name for o in h.cfg.outputs)
        seen.add(h.cfg.name)


def save_heads(heads: list[ActionHead], path: str | Path, record: dict | None = None) -> Path:
    """Write heads in the documented layout (``record``: a training record kept in the metadata as JSON)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f"heads.{h.cfg.name}.{k}": v.detach().float().contiguous() for h in heads
               for k, v in h.state_dict().items()}
    meta = {"format": FORMAT, "heads": json.dumps([h.cfg.to_dict() for h in heads])}
    if record is not None:
        meta["record"] = json.dumps(record)
    save_file(tensors, str(path), metadata=meta)
    return path


def load_heads(path: str | Path) -> tuple[list[ActionHead], dict]:
    """-> (heads in eval mode, their record or {}). Strict: every tensor of every head, with its shape; safetensors
    only (no code runs)."""
    path = Path(path)
    meta, tensors = read_safetensors(path, "heads file")
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cobra-edge heads file (metadata format {meta.get('format')!r}, "
                              f"expected {FORMAT!r})")
    try:
        configs = [HeadConfig.from_dict(d) for d in json.loads(meta["heads"])]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: metadata 'heads' is not a list of head configs: {e}") from e
    heads = []
    for cfg in configs:
        head = ActionHead(cfg)
        want = {f"heads.{cfg.name}.{k}": v.shape for k, v in head.state_dict().items()}
        missing = [k for k in want if k not in tensors]
        if missing:
            raise CheckpointError(f"{path}: head {cfg.name!r} misses tensors {missing}")
        wrong = [f"{k} {tuple(tensors[k].shape)} (expected {tuple(s)})" for k, s in want.items()
                 if tensors[k].shape != s]
        if wrong:
            raise CheckpointError(f"{path}: head {cfg.name!r}: wrong shapes: {', '.join(wrong)}")
        head.load_state_dict({k.split(".", 2)[2]: tensors[k] for k in want})
        heads.append(head.eval())
    extra = sorted(set(tensors) - {f"heads.{h.cfg.name}.{k}" for h in heads for k in h.state_dict()})
    if extra:
        raise CheckpointError(f"{path}: tensors no head reads: {extra[:5]}{' ...' if len(extra) > 5 else ''}")
    return heads, json.loads(meta.get("record", "{}"))
