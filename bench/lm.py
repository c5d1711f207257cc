"""Language-model benchmark, side by side in one run: same random weights, same inputs, same threads.

Contenders
- ``onnx``       our exported graphs in ONNX Runtime (prefill graph; step graph)
- ``onnx_steps`` the step graph called once per prompt token: what the prefill graph buys
- ``torch_ref``  our PyTorch reference (export/mamba.py)
- ``hf``         Hugging Face transformers' MambaForCausalLM with its cache (its pure-PyTorch path on CPU)

Also measured: the machine's memory read bandwidth and the bandwidth floor of one decode step (weight bytes
read once / bandwidth); each step time is reported as a multiple of that floor. Medians over repeats after
warm-up; ratios are computed pair by pair from the medians of the same run.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

RESULTS_DIR = Path(__file__).resolve().parent / "results"
SCHEMA = "cobra-edge-bench-lm/1"


@dataclass
class BenchOptions:
    presets: tuple[str, ...] = ("mamba-130m", "mamba-370m")
    batch_sizes: tuple[int, ...] = (1, 8)
    visual_tokens: int = 729
    prompt_tokens: int = 32
    threads: int = 2
    repeats: int = 5
    warmup: int = 1
    slow_repeats: int = 1  # for contenders that take seconds per call (HF and torch prefill, step loops)
    quick: bool = False
    cache_dir: Path = field(default_factory=lambda: Path(os.environ.get("COBRA_EDGE_CACHE", Path.home() / ".cache" / "cobra-edge")) / "bench")

    @classmethod
    def quick_options(cls, **kw) -> "BenchOptions":
        """Small model and sequence: the whole run in well under two minutes (for CI)."""
        return cls(presets=("bench-tiny",), visual_tokens=64, prompt_tokens=16, repeats=3, quick=True, **kw)


def timed(fn: Callable[[], object], repeats: int, warmup: int) -> dict:
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t) * 1e3)
    return {"median_ms": float(np.median(runs)), "min_ms": float(np.min(runs)), "runs_ms": [round(r, 3) for r in runs]}


def measure_read_bandwidth(threads: int, mbytes: int = 1024) -> float:
    """GB/s of reading a buffer larger than any cache (a sum over float32, torch with ``threads`` threads)."""
    import torch

    torch.set_num_threads(threads)
    a = torch.ones(mbytes * (1 << 20) // 4, dtype=torch.float32)
    a.sum()
    best = min(timed(lambda: a.sum(), repeats=5, warmup=1)["runs_ms"])
    return a.numel() * 4 / (best / 1e3) / 1e9


def _model_config(name: str):
    from export.config import MambaConfig, ModelConfig, preset

    if name == "bench-tiny":
        return ModelConfig(name=name, lm=MambaConfig(d_model=128, n_layer=4, vocab_size=1024), prompt_template="{prompt}")
    return preset(name)


def _artifact(name: str, model, opts: BenchOptions) -> Path:
    """Export once per preset into the cache (random weights, seed 0); reused while the config is unchanged."""
    from edge.manifest import artifact_matches
    from export.onnx_export import EXPORT_REVISION, export_model

    out = opts.cache_dir / name
    if not artifact_matches(out, model.cfg.to_dict(), verify_hashes=False, revision=EXPORT_REVISION):
        export_model(model, out, overwrite=True)
    return out


def _hf_model(model):
    """transformers' MambaForCausalLM holding exactly our weights."""
    from transformers import MambaConfig, MambaForCausalLM

    c = model.cfg.lm
    hf = MambaForCausalLM(MambaConfig(
        vocab_size=c.vocab_padded, hidden_size=c.d_model, num_hidden_layers=c.n_layer, state_size=c.d_state,
        conv_kernel=c.d_conv, expand=c.expand, time_step_rank=c.dt_rank, layer_norm_epsilon=c.norm_eps,
        use_bias=c.bias, use_conv_bias=c.conv_bias)).eval()
    state = {k.replace("backbone.embedding.", "backbone.embeddings."): v for k, v in model.llm.state_dict().items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k != "lm_head.weight"]:
        raise RuntimeError(f"HF Mamba does not take our weights: missing {missing[:3]}, unexpected {unexpected[:3]}")
    hf.tie_weights()
    return hf


def bench_preset(name: str, opts: BenchOptions, say=print) -> dict:
    import torch

    from engines import load_engine
    from edge.manifest import Manifest
    from export.model import build_random

    torch.set_num_threads(opts.threads)
    model = build_random(_model_config(name), seed=0)
    llm = model.llm
    say(f"[{name}] export (cached)")
    art = _artifact(name, model, opts)
    manifest = Manifest.load(art, verify_hashes=False)
    eng = {n: load_engine("onnxruntime", g.path, name=n, threads=opts.threads) for n, g in manifest.graphs.items()}
    hf = _hf_model(model)
    L = opts.visual_tokens + opts.prompt_tokens
    vocab = model.cfg.lm.vocab_size
    weight_bytes = sum(p.numel() * p.element_size() for p in llm.parameters())  # tied head counted once
    results: dict = {"preset": name, "prefill_tokens": L, "weight_bytes": weight_bytes,
                     "parameters": sum(p.numel() for p in llm.parameters()), "prefill": {}, "step": {}}
    rng = np.random.default_rng(0)
    slow = dict(repeats=opts.slow_repeats, warmup=0 if not opts.quick else 1)
    fast = dict(repeats=opts.repeats, warmup=opts.warmup)
    with torch.no_grad():
        for B in opts.batch_sizes:
            ids = rng.integers(0, vocab, (B, L)).astype(np.int64)
            ids_t = torch.from_numpy(ids)
            conv, ssm = manifest.state.zeros(B)
            emb = eng["embed"].run({"input_ids": ids})["inputs_embeds"]
            row: dict = {}
            say(f"[{name}] prefill B={B}, L={L}")
            row["onnx"] = timed(lambda: eng["prefill"].run({"inputs_embeds": emb, "conv_state": conv, "ssm_state": ssm}), **fast)
            # every contender computes the LM head on the last position only (what a prefill needs; HF's
            # generate() asks the same with logits_to_keep=1)
            row["torch_ref"] = timed(lambda: llm.forward_embeds(llm.embed(ids_t), *llm.empty_state(B), last_only=True),
                                     **slow)
            row["hf"] = timed(lambda: hf(input_ids=ids_t, use_cache=True, logits_to_keep=1), **slow)
            if B == 1:
                def step_loop():
                    c, s = conv, ssm
                    for t in range(L):
                        o = eng["step"].run({"input_ids": ids[:, t], "conv_state": c, "ssm_state": s})
                        c, s = o["conv_state_out"], o["ssm_state_out"]
                row["onnx_steps"] = timed(step_loop, **slow)
            results["prefill"][str(B)] = row

            say(f"[{name}] decode step B={B}")
            tok = ids[:, -1].copy()
            tok_t = torch.from_numpy(tok)
            out = eng["prefill"].run({"inputs_embeds": emb, "conv_state": conv, "ssm_state": ssm})
            c_on, s_on = out["conv_state_out"], out["ssm_state_out"]
            c_t, s_t = torch.from_numpy(c_on), torch.from_numpy(s_on)
            hf_cache = hf(input_ids=ids_t[:, : min(L, 8)], use_cache=True).cache_params
            step = {
                "onnx": timed(lambda: eng["step"].run({"input_ids": tok, "conv_state": c_on, "ssm_state": s_on}), **fast),
                "torch_ref": timed(lambda: llm.step(tok_t, c_t, s_t), **fast),
                "hf": timed(lambda: hf(input_ids=tok_t[:, None], cache_params=hf_cache, use_cache=True), **fast),
            }
            results["step"][str(B)] = step
    return results


def ratios(result: dict, floor_ms: float) -> dict:
    """Pairwise speed-ups from medians (>1: ONNX is faster), and the step as a multiple of the bandwidth floor."""
    def over_onnx(row: dict) -> dict:
        on = row["onnx"]["median_ms"]
        return {f"{k}_over_onnx": row[k]["median_ms"] / on for k in row if k != "onnx"}

    out: dict = {"prefill": {B: over_onnx(row) for B, row in result["prefill"].items()},
                 "step": {B: {**over_onnx(row), "onnx_over_floor": row["onnx"]["median_ms"] / floor_ms}
                          for B, row in result["step"].items()}}
    if "1" in result["step"] and "8" in result["step"]:
        out["step"]["b8_over_b1"] = result["step"]["8"]["onnx"]["median_ms"] / result["step"]["1"]["onnx"]["median_ms"]
    return out


def machine_info(threads: int) -> dict:
    import onnxruntime
    import torch

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "threads": threads, "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "torch": torch.__version__}
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def run(opts: BenchOptions, out_dir: Path = RESULTS_DIR, say=print) -> tuple[dict, Path]:
    say(f"measuring memory read bandwidth ({opts.threads} threads)")
    bw = measure_read_bandwidth(opts.threads, mbytes=256 if opts.quick else 1024)
    doc = {"schema": SCHEMA, "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine_info(opts.threads),
           "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
           "read_bandwidth_gb_s": bw, "presets": []}
    for name in opts.presets:
        result = bench_preset(name, opts, say=say)
        floor_ms = result["weight_bytes"] / (bw * 1e9) * 1e3
        result["step_floor_ms"] = floor_ms
        result["ratios"] = ratios(result, floor_ms)
        doc["presets"].append(result)
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = "quick" if opts.quick else "full"
    path = out_dir / f"lm-{tag}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return doc, path


def format_table(doc: dict) -> str:
    lines = [f"read bandwidth {doc['read_bandwidth_gb_s']:.1f} GB/s ({doc['machine']['threads']} threads, "
             f"{doc['machine']['cpu']})"]
    for r in doc["presets"]:
        lines.append(f"\n{r['preset']}: {r['parameters'] / 1e6:.1f}M parameters, prefill {r['prefill_tokens']} tokens, "
                     f"step floor {r['step_floor_ms']:.1f} ms")
        lines.append(f"  {'phase':<8}{'B':>3}  " + "".join(f"{c:>12}" for c in ("onnx", "onnx_steps", "torch_ref", "hf"))
                     + "   (median ms)")
        for phase in ("prefill", "step"):
            for B, row in r[phase].items():
                cells = "".join(f"{row[c]['median_ms']:>12.1f}" if c in row else f"{'-':>12}"
                                for c in ("onnx", "onnx_steps", "torch_ref", "hf"))
                lines.append(f"  {phase:<8}{B:>3}  {cells}")
        rat = r["ratios"]
        for phase in ("prefill", "step"):
            for B, row in rat[phase].items():
                if isinstance(row, dict):
                    lines.append(f"  {phase} B={B}: " + ", ".join(f"{k} {v:.2f}x" for k, v in row.items()))
        if "b8_over_b1" in rat["step"]:
            lines.append(f"  step B=8 / B=1: {rat['step']['b8_over_b1']:.2f}")
    return "\n".join(lines)
