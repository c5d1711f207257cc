"""Precision variants of the language-model graphs (prefill, step), written next to the fp32 graphs; their weights go
to the artifact's one weights file, where only what a variant changes is new (export/weight_store.py).

    fp32  the default graphs (export/onnx_export.py)
    fp16  the weights in float16 (exported from a float16 copy of the model); for backends with fast half
          precision (TensorRT and CUDA on a Jetson). ONNX Runtime's CPU provider runs it, slowly.
    int8  W8A8 of every projection and the head: int8 weights with a scale per output channel, activations
          quantized per row (per token, per stream: a stream's answer never depends on its batch; export/quantize.py),
          for CPUs with int8 dot products
    int4  4-bit block-wise weight-only quantization (ONNX Runtime's MatMulNBits): the variant that fits an Orin Nano

Every variant keeps the fp32 graphs' tensor contract (names, dtypes, shapes: inputs are cast to the weights'
dtype inside the graph and outputs back), and the ssm state, the scan and the discretisation stay float32 in all
of them: only weights and the matmuls that read them change. Each variant's error against fp32 (same inputs,
both run in ONNX Runtime) is measured at export and written to the manifest.
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np

from .errors import ParityError

PRECISIONS = ("fp32", "fp16", "int8", "int4")
VARIANT_GRAPHS = ("prefill", "step")  # the graphs that hold the LM's weights; vision, projector, embed stay fp32
WEIGHTS = {
    "fp16": "float16 weights; activations float16 between the float32 islands (norms, softplus, scan)",
    "int8": "int8 weights of every projection and the head (per output channel, symmetric), activations quantized "
            "per row (per token and stream, symmetric); embedding gather float32",
    "int4": "4-bit weights of every projection and the head (MatMulNBits, blocks of 32 along the input axis, "
            "symmetric, one float32 scale per block), activations float32; embedding gather float32",
}


def variant_file(graph: str, precision: str) -> str:
    return f"{graph}.{precision}.onnx"


def check_precisions(precisions) -> tuple[str, ...]:
    unknown = [p for p in precisions if p not in PRECISIONS]
    if unknown:
        raise ValueError(f"unknown precision(s) {unknown}; choose from {list(PRECISIONS)}")
    return tuple(dict.fromkeys(p for p in precisions if p != "fp32"))


def export_fp16(model, gdefs, out_dir: Path, export_graph, store=None) -> None:
    """The prefill and step graphs of a float16 copy of the language model (same contract: graphs.PrefillGraph
    casts). The copy is made tensor by tensor on PyTorch's meta device (no float32 copy in between) and, with
    ``store``, moved into the weights file before anything is exported."""
    import torch

    from .mamba import MambaLM

    with torch.device("meta"):
        llm = MambaLM(model.cfg.lm)
    state = {k: v.to(torch.float16) for k, v in model.llm.state_dict().items() if k != "lm_head.weight"}
    missing, unexpected = llm.load_state_dict(state, assign=True, strict=False)
    if missing != ["lm_head.weight"] or unexpected:
        raise RuntimeError(f"float16 copy: missing {missing}, unexpected {unexpected}")
    llm.lm_head.weight = llm.backbone.embedding.weight  # tied, as in the float32 model
    del state
    if store is not None:
        store.bind(llm)
    half = types.SimpleNamespace(cfg=model.cfg, llm=llm)
    for gdef in gdefs:
        export_graph(half, gdef, out_dir / variant_file(gdef.name, "fp16"), store)


def variant_parity(open_engine, steps: int = 8, seed: int = 0) -> dict:
    """Compare a variant's prefill and step graphs with fp32's on the same inputs (ONNX Runtime, both).

    ``open_engine(graph, which)`` opens the "embed", "prefill" or "step" graph of "fp32" or "variant"; each engine is
    used and released before the next opens (a model of several GB holds one session at a time). Inputs: two prompts
    of 40 random token ids from a zero state. Reports max |variant - fp32| of the prefill's logits and states, of one
    step from the same (fp32) state, and how many of ``steps`` greedy tokens each row shares with fp32 before the
    first difference.
    """
    import gc

    from edge.decode import greedy_decode

    rng = np.random.default_rng(seed)
    embed = open_engine("embed", "fp32")
    ids = rng.integers(0, 256, (2, 40)).astype(np.int64)  # ids inside every vocabulary we build
    x = embed.run({"input_ids": ids})["inputs_embeds"]
    del embed
    out: dict = {}
    for which in ("fp32", "variant"):
        prefill = open_engine("prefill", which)
        spec = prefill.inputs
        conv = np.zeros((2, *spec["conv_state"].shape[1:]), np.float32)
        ssm = np.zeros((2, *spec["ssm_state"].shape[1:]), np.float32)
        pre = prefill.run({"inputs_embeds": x, "conv_state": conv, "ssm_state": ssm})
        del prefill
        gc.collect()
        step = open_engine("step", which)
        ref = out.get("fp32", {}).get("prefill", pre)  # one step from the same (fp32) state for both
        one = step.run({"input_ids": ref["next_token"], "conv_state": ref["conv_state_out"],
                        "ssm_state": ref["ssm_state_out"]})
        tokens, _, _ = greedy_decode(step, pre["next_token"], pre["conv_state_out"].copy(),
                                     pre["ssm_state_out"].copy(), [steps, steps], -1, [False, False])
        del step
        gc.collect()
        out[which] = {"prefill": pre, "step": one, "tokens": tokens}

    def err(a, b, name):
        va, vb = a[name].astype(np.float32), b[name].astype(np.float32)
        for who, v in (("fp32", va), ("variant", vb)):
            if not np.isfinite(v).all():  # a NaN would make the error NaN, and max() would hide it
                raise ParityError(f"precision variant: the {who} graph's {name!r} holds NaN or infinite values")
        return float(np.abs(va - vb).max())

    base, var = out["fp32"], out["variant"]
    report = {graph: {k: err(base[graph], var[graph], k) for k in ("logits", "conv_state_out", "ssm_state_out")}
              for graph in ("prefill", "step")}
    report["prefill"]["max_abs_logits"] = float(np.abs(base["prefill"]["logits"]).max())
    same = []
    for a, b in zip(base["tokens"], var["tokens"]):
        k = 0
        while k < len(a) and k < len(b) and a[k] == b[k]:
            k += 1
        same.append(k)
    report["greedy"] = {"tokens": steps, "same_prefix": same, "prompt_tokens": ids.shape[1]}
    report["reference"] = "fp32 graphs of this artifact, ONNX Runtime CPU"
    return report
