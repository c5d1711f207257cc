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


def _engines(artifact, kernels: bool = True):
    m = Manifest.load(artifact)
    return {n: load_engine("onnxruntime", g.path, name=n, kernels=kernels) for n, g in m.graphs.items()}


# the prefill's cobra_edge.SelectiveScan nodes: fused kernel (when built) and the portable ONNX function body
SCAN_PATHS = [pytest.param(True, id="kernel"), pytest.param(False, id="portable")]


def _need_kernel(kernels: bool) -> None:
    from engines.kernels import library

    if kernels and library() is None:
        pytest.skip("cobra-edge's kernel library is not built here (pip install -e . with a C++ compiler)")


@pytest.mark.parametrize("graph", ["vision", "projector", "embed", "prefill", "step"])
@pytest.mark.parametrize("kernels", SCAN_PATHS)
def test_graph_matches_reference(tiny_model, tiny_artifact, graph, kernels):
    """New shapes (B = 3, L = 11) beyond those checked at export time."""
    _need_kernel(kernels)
    gdef = next(g for g in graph_defs(tiny_model) if g.name == graph)
    rep = check_parity(tiny_model, gdef, tiny_artifact / gdef.file, cases=((3, 11), (1, 2)), kernels=kernels)
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


def test_prefill_is_one_scan_node_per_layer_with_a_portable_body(tiny_artifact, tiny_model):
    """One cobra_edge.SelectiveScan node per layer; the model carries its body as a local function made of
    standard operators, the recurrence one Scan (over chunks), not a loop of steps; the manifest names the op."""
    model = onnx.load(str(tiny_artifact / "prefill.onnx"))
    nodes = [(n.domain, n.op_type) for n in model.graph.node]
    assert nodes.count(("cobra_edge", "SelectiveScan")) == tiny_model.cfg.lm.n_layer, nodes
    names = [n.name for n in model.graph.node if n.op_type == "SelectiveScan"]  # the kernel's errors name them
    assert names == [f"layers.{i}.mixer.selective_scan" for i in range(tiny_model.cfg.lm.n_layer)]
    assert ("", "Scan") not in nodes and ("", "Loop") not in nodes
    (fn,) = [f for f in model.functions if (f.domain, f.name) == ("cobra_edge", "SelectiveScan")]
    assert list(fn.input) == ["x", "dt", "A", "B", "C", "D", "z", "dt_bias", "h"] and list(fn.output) == ["y", "h_out"]
    body = [n.op_type for n in fn.node]
    assert body.count("Scan") == 1 and "Loop" not in body and all(n.domain == "" for n in fn.node), body
    assert {o.domain: o.version for o in model.opset_import}.get("cobra_edge") == 1
    assert Manifest.load(tiny_artifact).graphs["prefill"].custom_ops == ("cobra_edge.SelectiveScan",
                                                                          "cobra_edge.CausalConv")
    convs = [n.name for n in model.graph.node if (n.domain, n.op_type) == ("cobra_edge", "CausalConv")]
    assert convs == [f"layers.{i}.mixer.causal_conv" for i in range(tiny_model.cfg.lm.n_layer)]
    assert ("", "Conv") not in nodes and ("", "MatMul") not in nodes  # projections: Gemm on the stored weights
    dims = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in model.graph.input}
    assert dims["inputs_embeds"][:2] == ["B", "L"]
    assert dims["conv_state"][0] == "B" and dims["ssm_state"][0] == "B"


def test_every_weight_is_stored_once_and_every_graph_refers_to_it(tiny_artifact):
    """One weights file; its bytes are exactly the distinct tensors the graphs (and variants) refer to, each stored
    once; no graph keeps a weight of its own; prefill and step read the same projections, embed and the head the
    same table."""
    from engines.onnxfile import external_refs

    m = Manifest.load(tiny_artifact)
    assert m.weights_file == "weights.bin" and m.raw["weights"]["file"] == "weights.bin"
    regions, users = {}, {}
    for name, entry in m.graphs.items():
        for tensor, ref in external_refs(entry.path).items():
            assert ref.location == "weights.bin"
            regions[ref.offset] = ref.length
            users.setdefault(ref.offset, set()).add(name)
        inline = [(t.name, onnx.numpy_helper.to_array(t).nbytes)
                  for t in onnx.load(str(entry.path), load_external_data=False).graph.initializer
                  if t.data_location != onnx.TensorProto.EXTERNAL]
        assert all(n < 128 for _, n in inline), (name, inline)  # shape constants and scalars only
    stored = sorted(regions.items())
    assert all(a + n <= b for (a, n), (b, _) in zip(stored, stored[1:]))  # no two regions overlap
    size = (tiny_artifact / "weights.bin").stat().st_size
    assert sum(regions.values()) <= size <= sum(regions.values()) + 64 * len(regions)  # alignment only
    shared = {frozenset(u) for u in users.values() if len(u) > 1}
    assert frozenset({"prefill", "step"}) in shared and frozenset({"embed", "prefill", "step"}) in shared


def test_step_is_two_fused_nodes_per_layer_with_portable_bodies(tiny_artifact, tiny_model):
    """The decode step's conv and state update: one cobra_edge.ConvStep and one cobra_edge.SelectiveStep node per
    layer, each with its body (standard elementwise operators, no Scan) as a local function."""
    model = onnx.load(str(tiny_artifact / "step.onnx"))
    n_layer = tiny_model.cfg.lm.n_layer
    for op, node in (("SelectiveStep", "selective_step"), ("ConvStep", "conv_step")):
        names = [n.name for n in model.graph.node if (n.domain, n.op_type) == ("cobra_edge", op)]
        assert names == [f"layers.{i}.mixer.{node}" for i in range(n_layer)]
        (fn,) = [f for f in model.functions if (f.domain, f.name) == ("cobra_edge", op)]
        assert all(n.domain == "" and n.op_type not in ("Scan", "Loop") for n in fn.node)
    assert Manifest.load(tiny_artifact).graphs["step"].custom_ops == ("cobra_edge.SelectiveStep", "cobra_edge.ConvStep")


@pytest.mark.parametrize("kernels", SCAN_PATHS)
def test_onnx_state_equivalence(tiny_artifact, tiny_model, kernels):
    """In ONNX: prefill(whole) == prefill(prefix) + prefill(rest) == prefill(prefix) + steps."""
    _need_kernel(kernels)
    e = _engines(tiny_artifact, kernels)
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
    # the graphs with custom ops are also checked as a runtime without cobra-edge's kernels runs them
    assert set(raw["parity"]["portable"]) == {"prefill", "step"} and raw["parity"]["kernels"]
    for graph, outs in raw["parity"]["portable"].items():
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
@pytest.mark.parametrize("kernels", SCAN_PATHS)
def test_exported_prefill_equals_the_reference_loop(tiny_artifact, tiny_model, length, kernels):
    """The prefill graph equals the PyTorch reference with the token-by-token loop from a non-zero state, both
    as the fused kernel runs it and as its portable body does (a Scan over chunks of 16 tokens: lengths the chunk
    does not divide, 1, 7, 729, 1000, and one it does, 64)."""
    from export.scan import DEFAULT_CHUNK

    _need_kernel(kernels)
    e = _engines(tiny_artifact, kernels)
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
    how = "fused kernel" if kernels else f"portable body, chunk {DEFAULT_CHUNK}, {length % DEFAULT_CHUNK} over"
    report(f"onnx prefill ({how}) vs reference loop, L={length}", err, 1e-4)
    assert err < 1e-4
