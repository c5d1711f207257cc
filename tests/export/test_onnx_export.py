"""Exported graphs against the PyTorch reference, state continuity in ONNX, and the manifest's contract."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from edge.manifest import Manifest, sha256_file  # noqa: E402
from engines import load_engine  # noqa: E402
from export.graphs import example_inputs, graph_defs  # noqa: E402
from export.onnx_export import ParityError, TOLERANCES, check_parity  # noqa: E402
from tests.conftest import report  # noqa: E402


def _engines(artifact):
    m = Manifest.load(artifact)
    return {n: load_engine("onnxruntime", g.path, name=n) for n, g in m.graphs.items()}


@pytest.mark.parametrize("graph", ["vision", "projector", "embed", "prefill", "step"])
def test_graph_matches_reference(tiny_model, tiny_artifact, graph):
    """New shapes (B = 3, L = 11) beyond those checked at export time."""
    gdef = next(g for g in graph_defs(tiny_model) if g.name == graph)
    rep = check_parity(tiny_model, gdef, tiny_artifact / gdef.file, cases=((3, 11), (1, 2)))
    for out, v in rep.items():
        report(f"{graph}.{out}", v["max_abs_err"], v["tol"])
        assert v["max_abs_err"] <= v["tol"]
        assert v["max_abs_err"] < 1e-4  # fp32 graphs are far tighter than the tolerance


def test_export_fails_past_tolerance(tiny_model, tiny_artifact):
    """A graph that disagrees with the model raises ParityError naming graph and output."""
    import copy

    other = copy.deepcopy(tiny_model)
    with torch.no_grad():
        other.llm.backbone.norm_f.weight.mul_(1.5)
    gdef = next(g for g in graph_defs(other) if g.name == "step")
    with pytest.raises(ParityError, match="graph 'step', output 'logits'"):
        check_parity(other, gdef, tiny_artifact / "step.onnx")


def test_prefill_is_a_scan_not_a_loop(tiny_artifact, tiny_model):
    model = onnx.load(str(tiny_artifact / "prefill.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Scan") == tiny_model.cfg.lm.n_layer, ops
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert dims["inputs_embeds"][:2] == ["B", "L"]
    assert dims["conv_state"][0] == "B" and dims["ssm_state"][0] == "B"


def test_onnx_state_equivalence(tiny_artifact, tiny_model):
    """In ONNX: prefill(whole) == prefill(prefix) + prefill(rest) == prefill(prefix) + steps."""
    e = _engines(tiny_artifact)
    lm = tiny_model.cfg.lm
    ids = np.random.default_rng(0).integers(0, 500, (2, 13)).astype(np.int64)
    emb = e["embed"].run({"input_ids": ids})["inputs_embeds"]
    conv = np.zeros((2, lm.n_layer, lm.d_inner, lm.d_conv - 1), np.float32)
    ssm = np.zeros((2, lm.n_layer, lm.d_inner, lm.d_state), np.float32)

    def prefill(x, c, s):
        o = e["prefill"].run({"inputs_embeds": x, "conv_state": c, "ssm_state": s})
        return o["logits"], o["conv_state_out"], o["ssm_state_out"]

    whole = prefill(emb, conv, ssm)
    for split in (1, 2, 6):
        head = prefill(emb[:, :split], conv, ssm)
        rest = prefill(emb[:, split:], head[1], head[2])
        err = max(float(np.abs(a - b).max()) for a, b in zip(whole, rest))
        report(f"onnx prefix {split} + rest", err, 1e-4)
        assert err < 1e-4
        logits, c, s = head
        for t in range(split, ids.shape[1]):
            o = e["step"].run({"input_ids": ids[:, t], "conv_state": c, "ssm_state": s})
            logits, c, s = o["logits"], o["conv_state_out"], o["ssm_state_out"]
        err = max(float(np.abs(a - b).max()) for a, b in zip(whole, (logits, c, s)))
        report(f"onnx prefix {split} + steps", err, 1e-4)
        assert err < 1e-4


def test_manifest_contract(tiny_artifact, tiny_model):
    raw = json.loads((tiny_artifact / "manifest.json").read_text())
    assert set(raw["graphs"]) == {"vision", "projector", "embed", "prefill", "step"}
    for rel, info in raw["files"].items():
        assert sha256_file(tiny_artifact / rel) == info["sha256"]
    assert {f"{g}.onnx" for g in raw["graphs"]} | {"tokenizer.json"} <= set(raw["files"])
    lm = tiny_model.cfg.lm
    assert raw["state"]["ssm_dtype"] == "float32"
    assert raw["graphs"]["step"]["inputs"]["ssm_state"]["shape"] == ["B", lm.n_layer, lm.d_inner, lm.d_state]
    assert raw["graphs"]["prefill"]["inputs"]["conv_state"]["shape"] == ["B", lm.n_layer, lm.d_inner, lm.d_conv - 1]
    assert raw["visual_tokens"] == 64
    assert raw["state"]["bytes_per_stream"] == Manifest.load(tiny_artifact).state.bytes_per_stream
    for graph, outs in raw["parity"]["graphs"].items():
        for out, v in outs.items():
            assert 0 <= v["max_abs_err"] <= v["tol"], (graph, out)
    # every declared input matches the ONNX file itself
    for name, g in raw["graphs"].items():
        model = onnx.load(str(tiny_artifact / g["file"]), load_external_data=False)
        assert [i.name for i in model.graph.input] == list(g["inputs"])
        assert [o.name for o in model.graph.output] == list(g["outputs"])


def test_example_inputs_follow_the_contract(tiny_model):
    for g in graph_defs(tiny_model):
        args = example_inputs(g, batch=3, length=4)
        for t, a in zip(g.inputs, args):
            want = tuple(3 if s == "B" else 4 if s == "L" else s for s in t.shape)
            assert tuple(a.shape) == want and str(a.dtype).endswith(t.dtype)
    assert set(TOLERANCES) >= {"float32"}


def test_export_refuses_to_overwrite(tiny_model, tiny_artifact):
    from export.onnx_export import export_model

    with pytest.raises(FileExistsError, match="not empty"):
        export_model(tiny_model, tiny_artifact)


@pytest.mark.parametrize("length", [1, 7, 64, 729, 1000])
def test_exported_chunked_prefill_equals_the_reference_loop(tiny_artifact, tiny_model, length):
    """The prefill graph (a Scan over chunks of 16 tokens) equals the PyTorch reference with the token-by-token
    loop, for lengths the chunk does not divide (1, 7, 729, 1000) and one it does (64), from a non-zero state."""
    from export.scan import DEFAULT_CHUNK

    e = _engines(tiny_artifact)
    lm = tiny_model.cfg.lm
    g = torch.Generator().manual_seed(length)
    emb = torch.randn(2, length, lm.d_model, generator=g) * 0.5
    conv = torch.randn(2, lm.n_layer, lm.d_inner, lm.d_conv - 1, generator=g) * 0.1
    ssm = torch.randn(2, lm.n_layer, lm.d_inner, lm.d_state, generator=g) * 0.1
    with torch.no_grad():
        logits, conv_ref, ssm_ref = tiny_model.llm.forward_embeds(emb, conv, ssm, last_only=True)
    o = e["prefill"].run({"inputs_embeds": emb.numpy(), "conv_state": conv.numpy(), "ssm_state": ssm.numpy()})
    err = max(float(np.abs(o["logits"] - logits[:, -1].numpy()).max()),
              float(np.abs(o["conv_state_out"] - conv_ref.numpy()).max()),
              float(np.abs(o["ssm_state_out"] - ssm_ref.numpy()).max()))
    report(f"onnx prefill (chunk {DEFAULT_CHUNK}) vs reference loop, L={length} ({length % DEFAULT_CHUNK} over)",
           err, 1e-4)
    assert err < 1e-4
