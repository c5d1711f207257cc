"""Language-model benchmark, side by side in one run: same random weights, same inputs, same threads.

Contenders
- ``onnx``       our exported graphs in ONNX Runtime (prefill graph; step graph), fp32; the prefill's selective scan
                 run by engines/kernels' fused CPU kernel when it is built (``kernels`` in the JSON says)
- ``onnx_portable``  the same fp32 prefill graph without the kernel library: its portable ONNX function body
                 (one Scan over 16-token chunks per layer), what any other ONNX runtime would run
- ``onnx_int8``, ``onnx_fp16``, ``onnx_int4``  the precision variants of the same graphs (export/precision.py)
- ``onnx_bound``, ``onnx_int8_bound``, ``onnx_int4_bound``  the step graph in the IO-bound loop (state kept in
                 OrtValues, only the argmax token id copied out: engines/loop.py)
- ``onnx_decode``, ``onnx_int8_decode``, ``onnx_int4_decode``  what the runtime decodes with: the prefill graph at
                 L = 1 fed the embed graph's row of the token, in the IO-bound loop (edge/decode.py ``Stepper``: one
                 language-model session, its weights resident once)
- ``before``, ``before_int8`` (with ``--before NAME=DIR``)  the same graphs from an artifact exported before the
                 shared-weights change (step graph, own weights per graph), in the same rounds: the A/B of the change;
                 the JSON also says whether both give the same greedy tokens
- ``onnx_steps`` the step graph called once per prompt token: what the prefill graph buys
- ``torch_ref``  our PyTorch reference (export/mamba.py)
- ``hf``         Hugging Face transformers' MambaForCausalLM with its cache (its pure-PyTorch path on CPU)

Also measured: the machine's memory read bandwidth and the bandwidth floor of one decode step (weight bytes
read once / bandwidth); each step time is reported as a multiple of that floor. Medians over repeats after
warm-up; contenders take turns round by round (one call each per round), so a slow spell of the shared machine
hits all of them alike; ratios are computed pair by pair from the medians of the same run.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .timing import RESULTS_DIR, machine_info, measure_read_bandwidth, read_probe, side_by_side

SCHEMA = "cobra-edge-bench-lm/3"


OPTIONAL_CONTENDERS = ("hf", "torch_ref", "onnx_portable", "onnx_steps", "session_options")


@dataclass
class BenchOptions:
    presets: tuple[str, ...] = ("mamba-130m", "mamba-370m")
    batch_sizes: tuple[int, ...] = (1, 8)
    precisions: tuple[str, ...] = ("fp32", "int8", "fp16", "int4")
    before: dict = field(default_factory=dict)  # preset -> an artifact of the same weights in the earlier format
    without: tuple[str, ...] = ()  # contenders left out (OPTIONAL_CONTENDERS): to fit memory, or time
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
    if not artifact_matches(out, model.cfg.to_dict(), verify_hashes=False, revision=EXPORT_REVISION,
                            precisions=opts.precisions):
        export_model(model, out, overwrite=True, precisions=opts.precisions)
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


def bench_preset(name: str, opts: BenchOptions, say=print, session_options: bool = False) -> dict:
    """Both phases of one preset. Prefill rows first (the prefill engines, the fp32 step for the step-call loop,
    the PyTorch reference and transformers loaded), then step rows (the step engines) from the states the fp32
    prefill produced: a phase's engines are released before the next loads, so mamba-370m's B = 8 rows fit in
    24 GB next to transformers' own prefill."""
    import gc

    import torch

    from edge.decode import STATE_CARRY, Stepper
    from edge.manifest import Manifest
    from engines import load_engine
    from engines.loop import open_loop
    from export.model import build_random

    torch.set_num_threads(opts.threads)
    model = build_random(_model_config(name), seed=0)
    llm = model.llm
    say(f"[{name}] export (cached)")
    art = _artifact(name, model, opts)
    manifest = Manifest.load(art, verify_hashes=False)

    def open_(graph: str, precision: str = "fp32", **kw):
        return load_engine("onnxruntime", manifest.graphs_for(precision)[graph].path, name=graph,
                           threads=opts.threads, **kw)

    embed = open_("embed")
    before = None
    if name in opts.before:
        before = Manifest.load(opts.before[name], verify_hashes=False)

    def open_before(graph: str, precision: str = "fp32"):
        return load_engine("onnxruntime", before.graphs_for(precision)[graph].path, name=graph, threads=opts.threads)

    before_precisions = [p for p in ("fp32", "int8") if before is not None and p in before.precisions
                         and p in opts.precisions]
    hf = None if "hf" in opts.without else _hf_model(model)
    L = opts.visual_tokens + opts.prompt_tokens
    vocab = model.cfg.lm.vocab_size
    weight_bytes = sum(p.numel() * p.element_size() for p in llm.parameters())  # tied head counted once
    results: dict = {"preset": name, "prefill_tokens": L, "weight_bytes": weight_bytes,
                     "parameters": sum(p.numel() for p in llm.parameters()), "prefill": {}, "step": {},
                     "variant_parity": {p: manifest.raw["variants"][p]["parity"] for p in manifest.variants}}
    rng = np.random.default_rng(0)
    inputs = {B: rng.integers(0, vocab, (B, L)).astype(np.int64) for B in opts.batch_sizes}
    turns = dict(repeats=opts.repeats, warmup=opts.warmup, slow_repeats=opts.slow_repeats)

    def label(p: str, suffix: str = "") -> str:
        return "onnx" + ("" if p == "fp32" else f"_{p}") + suffix

    states = {}  # B -> the fp32 prefill's (conv, ssm): where every step row starts
    with torch.no_grad():
        prefill = {p: open_("prefill", p) for p in opts.precisions}
        portable = open_("prefill", kernels=False)
        step32 = open_("step")
        old_prefill = {p: open_before("prefill", p) for p in before_precisions}
        for B, ids in inputs.items():
            ids_t = torch.from_numpy(ids)
            conv, ssm = manifest.state.zeros(B)
            feeds = {"inputs_embeds": embed.run({"input_ids": ids})["inputs_embeds"], "conv_state": conv,
                     "ssm_state": ssm}
            say(f"[{name}] prefill B={B}, L={L}")
            fns = {label(p): (lambda e=prefill[p]: e.run(feeds)) for p in opts.precisions}
            fns.update({("before" if p == "fp32" else f"before_{p}"): (lambda e=old_prefill[p]: e.run(feeds))
                        for p in before_precisions})
            fns["onnx_portable"] = lambda: portable.run(feeds)
            # every contender computes the LM head on the last position only (what a prefill needs; HF's
            # generate() asks the same with logits_to_keep=1)
            fns["torch_ref"] = lambda: llm.forward_embeds(llm.embed(ids_t), *llm.empty_state(B), last_only=True)
            fns["hf"] = lambda: hf(input_ids=ids_t, use_cache=True, logits_to_keep=1)
            slow = ("onnx_portable", "torch_ref", "hf")
            if B == 1:
                def step_loop():
                    c, s = conv, ssm
                    for t in range(L):
                        o = step32.run({"input_ids": ids[:, t], "conv_state": c, "ssm_state": s})
                        c, s = o["conv_state_out"], o["ssm_state_out"]
                fns["onnx_steps"] = step_loop
                slow += ("onnx_steps",)
            for left_out in opts.without:
                fns.pop(left_out, None)
            results["prefill"][str(B)] = side_by_side(fns, slow=slow, **turns)
            out = prefill["fp32"].run(feeds)
            states[B] = (out["conv_state_out"], out["ssm_state_out"])
        if before_precisions:
            checked = [p for p in ("fp32", "fp16", "int8") if p in before.precisions and p in prefill]
            results["before_after"] = same_tokens(prefill, old_prefill, embed, open_before, inputs, checked)
        del prefill, portable, step32, fns, old_prefill
        gc.collect()

        steps = {p: open_("step", p) for p in opts.precisions}
        lm_prefill = {p: open_("prefill", p) for p in opts.precisions if p != "fp16"}
        old_steps = {p: open_before("step", p) for p in before_precisions}
        read, read_bytes = read_probe(opts.threads, mbytes=256 if opts.quick else 1024)
        for B, ids in inputs.items():
            say(f"[{name}] decode step B={B}")
            tok = ids[:, -1].copy()
            tok_t = torch.from_numpy(tok)
            c_on, s_on = states[B]
            c_t, s_t = torch.from_numpy(c_on), torch.from_numpy(s_on)
            hf_cache = None
            if hf is not None:
                hf_cache = hf(input_ids=torch.from_numpy(ids)[:, : min(L, 8)], use_cache=True).cache_params
            fns = {label(p): (lambda e=steps[p]: e.run({"input_ids": tok, "conv_state": c_on, "ssm_state": s_on}))
                   for p in opts.precisions}
            state = {"conv_state": c_on, "ssm_state": s_on}
            for p in opts.precisions:
                if p != "fp16":  # the IO-bound loops: state in OrtValues, token ids out
                    loop = open_loop(steps[p], STATE_CARRY, state, fetch=("next_token",))
                    fns[label(p, "_bound")] = lambda lp=loop: lp.run({"input_ids": tok})
                    stepper = Stepper(lm_prefill[p], embed)  # the runtime's: the prefill graph at L = 1
                    loop = open_loop(lm_prefill[p], STATE_CARRY, state, fetch=("next_token",))
                    fns[label(p, "_decode")] = lambda lp=loop, st=stepper: lp.run(st.feeds(tok))
            for p in before_precisions:
                loop = open_loop(old_steps[p], STATE_CARRY, state, fetch=("next_token",))
                fns["before_bound" if p == "fp32" else f"before_{p}_bound"] = \
                    lambda lp=loop: lp.run({"input_ids": tok})
            fns["torch_ref"] = lambda: llm.step(tok_t, c_t, s_t)
            fns["hf"] = lambda: hf(input_ids=tok_t[:, None], cache_params=hf_cache, use_cache=True)
            for left_out in opts.without:
                fns.pop(left_out, None)
            fns["read"] = read  # the bandwidth the floor is computed from, measured in the same rounds
            row = side_by_side(fns, repeats=max(opts.repeats, 20), warmup=max(opts.warmup, 2))
            read_ms = row.pop("read")["median_ms"]
            row_bw = read_bytes / (read_ms / 1e3) / 1e9
            results["step"][str(B)] = row
            results.setdefault("read_bandwidth_in_step_rounds_gb_s", {})[str(B)] = row_bw
        del steps, lm_prefill, old_steps, fns
        gc.collect()
    if session_options:
        results["session_options"] = measure_session_options(art, manifest, opts, say)
    return results


def same_tokens(prefill: dict, old_prefill: dict, embed, open_before, inputs: dict, precisions, steps: int = 8):
    """Greedy tokens of the current artifact (prefill, then its decode through the prefill graph) and of the earlier
    one (its prefill, then its step graph) from the same prompts: equal per precision? And the largest difference
    of the states after the prefill and after the last step, beside the states' largest magnitude."""
    from edge.decode import Stepper, greedy_decode

    out = {}
    for p in precisions:
        ids = inputs[min(inputs)]
        feeds = {"inputs_embeds": embed.run({"input_ids": ids})["inputs_embeds"]}
        tokens, states = {}, {}
        old = old_prefill[p] if p in old_prefill else open_before("prefill", p)
        for who, pre, stepper in (("after", prefill[p], Stepper(prefill[p], embed)),
                                  ("before", old, Stepper(open_before("step", p)))):
            spec_c, spec_s = pre.inputs["conv_state"], pre.inputs["ssm_state"]
            conv = np.zeros((ids.shape[0], *spec_c.shape[1:]), np.float32)
            ssm = np.zeros((ids.shape[0], *spec_s.shape[1:]), np.float32)
            o = pre.run({**feeds, "conv_state": conv, "ssm_state": ssm})
            t, conv, ssm = greedy_decode(stepper, o["next_token"], o["conv_state_out"].copy(),
                                         o["ssm_state_out"].copy(), [steps] * ids.shape[0], -1, [False] * ids.shape[0])
            tokens[who] = t
            states[who] = (o["ssm_state_out"], ssm)
        diff = [float(np.abs(a - b).max()) for a, b in zip(states["after"], states["before"])]
        out[p] = {"equal": tokens["after"] == tokens["before"], "tokens": steps, "rows": ids.shape[0],
                  "ssm_state_max_abs_diff": {"after_prefill": diff[0], "after_steps": diff[1]},
                  "ssm_state_max_abs": float(np.abs(states["before"][0]).max())}
    return out


SESSION_OPTIONS = {  # name -> (threads, spinning, memory arena: "shared" | "own" | "none", graph optimisation level)
    "2 threads, no spinning, shared arena, all optimisations (OrtEngine's default)": (2, False, "shared", "ORT_ENABLE_ALL"),
    "2 threads, spinning": (2, True, "shared", "ORT_ENABLE_ALL"),
    "2 threads, an arena per session": (2, False, "own", "ORT_ENABLE_ALL"),
    "2 threads, no memory arena": (2, False, "none", "ORT_ENABLE_ALL"),
    "2 threads, extended optimisations only": (2, False, "shared", "ORT_ENABLE_EXTENDED"),
    "1 thread": (1, False, "shared", "ORT_ENABLE_ALL"),
}


def measure_session_options(art: Path, manifest, opts: BenchOptions, say=print) -> dict:
    """The fp32 step (B = 1) and prefill (B = 1) under each of SESSION_OPTIONS, in turns (how OrtEngine's
    defaults were chosen). Sessions run in turns as in the runtime, so a spinning pool shows what it costs
    the session after it. The kernel library is registered as OrtEngine registers it."""
    import onnxruntime as ort

    from engines.kernels import library

    kernels = library()

    def session(graph: str, threads: int, spin: bool, arena: str, level: str):
        so = ort.SessionOptions()
        if kernels:  # as OrtEngine opens them: the fused ops run the kernel library
            so.register_custom_ops_library(str(kernels.path))
        so.intra_op_num_threads, so.inter_op_num_threads = threads, 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        so.enable_cpu_mem_arena = arena != "none"
        if arena == "shared":  # registered by the OrtEngines this run already opened
            so.add_session_config_entry("session.use_env_allocators", "1")
        so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        so.log_severity_level = 3
        return ort.InferenceSession(str(art / f"{graph}.onnx"), so, providers=["CPUExecutionProvider"])

    conv, ssm = manifest.state.zeros(1)
    d_model = manifest.model["lm"]["d_model"]
    emb = np.random.default_rng(0).standard_normal((1, opts.visual_tokens + opts.prompt_tokens, d_model)).astype(np.float32)
    out: dict = {}
    for graph, feeds, repeats in (("step", {"input_ids": np.ones(1, np.int64), "conv_state": conv, "ssm_state": ssm}, 20),
                                  ("prefill", {"inputs_embeds": emb, "conv_state": conv, "ssm_state": ssm}, opts.repeats)):
        say(f"session options: {graph}")
        sessions = {k: session(graph, *v) for k, v in SESSION_OPTIONS.items()}
        out[graph] = side_by_side({k: (lambda s=s: s.run(None, feeds)) for k, s in sessions.items()}, repeats, 2)
    return out


def ratios(result: dict, floor_ms: dict) -> dict:
    """Pairwise speed-ups from medians (>1: ONNX is faster), and each step as a multiple of its row's bandwidth
    floor (``floor_ms``: B -> ms)."""
    def over_onnx(row: dict) -> dict:
        on = row["onnx"]["median_ms"]
        return {f"{k}_over_onnx": row[k]["median_ms"] / on for k in row if k != "onnx"}

    out: dict = {"prefill": {B: over_onnx(row) for B, row in result["prefill"].items()},
                 "step": {B: {**over_onnx(row), "onnx_over_floor": row["onnx"]["median_ms"] / floor_ms[B]}
                          for B, row in result["step"].items()}}
    for B, row in result["step"].items():
        out["step"][B].update({f"{k}_over_floor": row[k]["median_ms"] / floor_ms[B] for k in row
                               if k.startswith("onnx_")})
        for k in row:
            for q in ("_int8", "_int4"):  # a variant vs the fp32 call of the same kind (plain, bound, decode)
                if k.startswith(f"onnx{q}") and k.replace(q, "") in row:
                    out["step"][B][f"{k}_speedup_vs_fp32"] = row[k.replace(q, "")]["median_ms"] / row[k]["median_ms"]
            if k.startswith("before") and k.replace("before", "onnx").replace("onnx_bound", "onnx_decode") in row:
                after = k.replace("before", "onnx").replace("_bound", "_decode")
                out["step"][B][f"{after}_over_{k}"] = row[after]["median_ms"] / row[k]["median_ms"]
    if "1" in result["step"] and "8" in result["step"]:
        for k in result["step"]["1"]:
            if k.startswith("onnx") and k in result["step"]["8"]:
                out["step"][f"b8_over_b1_{k}"] = result["step"]["8"][k]["median_ms"] / result["step"]["1"][k]["median_ms"]
    return out


def run(opts: BenchOptions, out_dir: Path = RESULTS_DIR, say=print) -> tuple[dict, Path]:
    say(f"measuring memory read bandwidth ({opts.threads} threads)")
    bw = measure_read_bandwidth(opts.threads, mbytes=256 if opts.quick else 1024)
    doc = {"schema": SCHEMA, "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": machine_info(opts.threads),
           "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
           "read_bandwidth_gb_s": bw["median"], "read_bandwidth_best_gb_s": bw["best"], "presets": []}
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = "quick" if opts.quick else "full"
    path = out_dir / f"lm-{tag}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    for i, name in enumerate(opts.presets):
        result = bench_preset(name, opts, say=say, session_options=i == 0 and "session_options" not in opts.without)
        # the floor of each step row: weight bytes / the bandwidth measured in that row's own rounds
        floors = {B: result["weight_bytes"] / (gb_s * 1e9) * 1e3
                  for B, gb_s in result["read_bandwidth_in_step_rounds_gb_s"].items()}
        result["step_floor_ms"] = floors
        result["ratios"] = ratios(result, floors)
        doc["presets"].append(result)
        path.write_text(json.dumps(doc, indent=2) + "\n")  # after each preset: a long run keeps what it measured
    return doc, path


def format_table(doc: dict) -> str:
    lines = [f"read bandwidth {doc['read_bandwidth_gb_s']:.1f} GB/s median, {doc['read_bandwidth_best_gb_s']:.1f} best "
             f"({doc['machine']['threads']} threads, {doc['machine']['cpu']}); {doc['machine']['kernels']}"]
    for r in doc["presets"]:
        floors = ", ".join(f"B={B} {ms:.1f} ms ({r['read_bandwidth_in_step_rounds_gb_s'][B]:.1f} GB/s in its rounds)"
                           for B, ms in r["step_floor_ms"].items())
        lines.append(f"\n{r['preset']}: {r['parameters'] / 1e6:.1f}M parameters, prefill {r['prefill_tokens']} tokens, "
                     f"step floor {floors}")
        cols = list(dict.fromkeys(k for phase in ("prefill", "step") for row in r[phase].values() for k in row))
        lines.append(f"  {'phase':<8}{'B':>3}  " + "".join(f"{c:>17}" for c in cols) + "   (median ms)")
        for phase in ("prefill", "step"):
            for B, row in r[phase].items():
                cells = "".join(f"{row[c]['median_ms']:>17.1f}" if c in row else f"{'-':>17}" for c in cols)
                lines.append(f"  {phase:<8}{B:>3}  {cells}")
        rat = r["ratios"]
        for phase in ("prefill", "step"):
            for B, row in rat[phase].items():
                if isinstance(row, dict):
                    lines.append(f"  {phase} B={B}: " + ", ".join(f"{k} {v:.2f}x" for k, v in row.items()))
        lines += [f"  step {k[11:]} B=8 / B=1: {v:.2f}" for k, v in rat["step"].items() if k.startswith("b8_over_b1_")]
        for graph, rows in r.get("session_options", {}).items():
            lines.append(f"  session options, {graph} B=1: " + "; ".join(f"{k} {v['median_ms']:.1f} ms" for k, v in rows.items()))
    return "\n".join(lines)
