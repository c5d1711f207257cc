"""What each connector design costs, side by side in one run: visual tokens, parameters, projector time and the
LM prefill time per frame.

Rows are the designs at the sizes their papers use, on Cobra's 3B backbone (d_model 2560): parameters are
counted on the meta device (nothing allocated). Times are measured on this machine: the projector at paper
size in PyTorch (fp32, random weights, ``threads`` threads), and the prefill of the design's T (+ K object
tokens) + 32 prompt tokens through our exported prefill graph in ONNX Runtime for the mamba-130m backbone, a
stand-in that fits this machine (the 2.8B backbone's prefill scales with the same token count). Medians.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from .lm import BenchOptions, _artifact
from .timing import RESULTS_DIR, machine_info, timed

SCHEMA = "cobra-edge-bench-connectors/1"

# (label, preset, object boxes K, projector kind override)
PAPER_ROWS = (
    ("Cobra fused GELU MLP", "cobra-3b", 0, None),
    ("Cobra GELU MLP (SigLIP)", "cobra-siglip-3b", 0, None),
    ("Cobra linear", "cobra-3b", 0, "linear"),
    ("Cobra LDP (fused-ldpnet)", "cobra-ldp-3b", 0, None),
    ("Cambrian-1 SVA", "cambrian-sva-3b", 0, None),
    ("MG-LLaVA Conv-Gate", "mg-llava-3b", 0, None),
    ("MG-LLaVA Conv-Gate + 100 boxes", "mg-llava-3b", 100, None),
    ("mPLUG-Owl2 abstractor", "owl2-abstractor-3b", 0, None),
)
QUICK_ROWS = (
    ("tiny fused GELU MLP", "tiny", 0, None),
    ("tiny LDP", "tiny-ldp", 0, None),
    ("tiny SVA", "tiny-sva", 0, None),
    ("tiny MG + 3 boxes", "tiny-mg", 3, None),
    ("tiny abstractor", "tiny-abstractor", 0, None),
)


@dataclass
class ConnectorOptions:
    lm_preset: str = "mamba-130m"
    prompt_tokens: int = 32
    threads: int = 2
    repeats: int = 3
    quick: bool = False
    cache_dir: Path = field(default_factory=lambda: BenchOptions().cache_dir)

    @classmethod
    def quick_options(cls, **kw) -> "ConnectorOptions":
        """Tiny presets and a small LM: seconds (for CI)."""
        return cls(lm_preset="bench-tiny", prompt_tokens=16, repeats=1, quick=True, **kw)


def _config(preset_name: str, kind: str | None):
    from export.config import preset

    cfg = preset(preset_name)
    return replace(cfg, name=f"{cfg.name}-{kind}", projector=kind) if kind else cfg


def _count(module) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def _projector_inputs(cfg, boxes: int):
    """Random inputs of the projector graph at this config's shapes (B = 1)."""
    import torch

    g = torch.Generator().manual_seed(0)
    if cfg.multi_scale:
        feats = [torch.randn(1, v.num_patches, v.width, generator=g) for v in cfg.vision]
    else:
        feats = [torch.randn(1, cfg.vision[0].num_patches, cfg.d_vision, generator=g)]
    if cfg.object_tokens:
        corner = torch.rand(1, max(boxes, 1), 2, generator=g) * 0.7
        feats += [torch.cat([corner, corner + 0.2], dim=-1), torch.arange(max(boxes, 1))[None] < boxes]
    return feats


def bench_row(label: str, preset_name: str, boxes: int, kind: str | None, opts: ConnectorOptions, prefill) -> dict:
    import torch

    from export.model import CobraModel
    from export.projector import build_projector

    cfg = _config(preset_name, kind)
    with torch.device("meta"):
        meta = CobraModel(cfg)
    projector = build_projector(cfg).eval()  # real weights (default init): only the projector is run at paper size
    inputs = _projector_inputs(cfg, boxes)
    with torch.no_grad():
        proj = timed(lambda: projector(*inputs), repeats=opts.repeats, warmup=1)
    tokens = cfg.num_visual_tokens + boxes
    return {
        "label": label, "preset": cfg.name, "projector": cfg.projector, "object_boxes": boxes,
        "visual_tokens": tokens, "vision_parameters": _count(meta.vision), "projector_parameters": _count(meta.projector),
        "projector_ms": proj, "prefill_tokens": tokens + opts.prompt_tokens, "prefill_ms": prefill(tokens + opts.prompt_tokens),
    }


def run(opts: ConnectorOptions, out_dir: Path = RESULTS_DIR, say=print) -> tuple[dict, Path]:
    import torch

    from edge.manifest import Manifest
    from engines import load_engine
    from export.model import build_random

    from .lm import _model_config

    torch.set_num_threads(opts.threads)
    say(f"[{opts.lm_preset}] export the prefill backbone (cached)")
    lm_model = build_random(_model_config(opts.lm_preset), seed=0)
    art = _artifact(opts.lm_preset, lm_model, BenchOptions(cache_dir=opts.cache_dir))
    manifest = Manifest.load(art, verify_hashes=False)
    engine = load_engine("onnxruntime", manifest.graphs["prefill"].path, name="prefill", threads=opts.threads)
    d_model = lm_model.cfg.lm.d_model
    cache: dict[int, dict] = {}

    def prefill(length: int) -> dict:
        if length not in cache:
            emb = np.random.default_rng(length).standard_normal((1, length, d_model)).astype(np.float32) * 0.5
            conv, ssm = manifest.state.zeros(1)
            feeds = {"inputs_embeds": emb, "conv_state": conv, "ssm_state": ssm}
            cache[length] = timed(lambda: engine.run(feeds), repeats=opts.repeats, warmup=1)
        return cache[length]

    rows = []
    for label, preset_name, boxes, kind in (QUICK_ROWS if opts.quick else PAPER_ROWS):
        say(f"[{label}] projector and prefill")
        rows.append(bench_row(label, preset_name, boxes, kind, opts, prefill))
    doc = {"schema": SCHEMA, "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine_info(opts.threads),
           "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
           "prefill_backbone": opts.lm_preset, "rows": rows}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"connectors-{'quick' if opts.quick else 'full'}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return doc, path


def format_table(doc: dict) -> str:
    """A Markdown table (as README shows it)."""
    head = ("| design | visual tokens | projector params | vision params | projector ms | "
            f"prefill ms ({doc['prefill_backbone']}, +{doc['options']['prompt_tokens']} prompt tokens) |")
    lines = [head, "|---|---:|---:|---:|---:|---:|"]
    for r in doc["rows"]:
        lines.append(f"| {r['label']} | {r['visual_tokens']} | {r['projector_parameters'] / 1e6:.1f}M | "
                     f"{r['vision_parameters'] / 1e6:.1f}M | {r['projector_ms']['median_ms']:.1f} | "
                     f"{r['prefill_ms']['median_ms']:.0f} |")
    return "\n".join(lines)
