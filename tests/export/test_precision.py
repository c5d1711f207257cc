"""Precision variants (fp16, int8, int4) of the prefill and step graphs: written, described in the manifest with
their error against fp32, stored as only what they change, chosen at load, and answering like fp32 on the tiny
model's prompts; int8 is per-row W8A8 (a numpy reference) and, like the others, never mixes streams."""

import json

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")

from edge.errors import ManifestError  # noqa: E402
from edge.manifest import Manifest  # noqa: E402
from edge.runtime import Runtime  # noqa: E402

PROMPTS = ["What is in the image?", "Is the path clear?", "Describe the scene."]


@pytest.fixture(scope="module")
def variants(tiny_model, tmp_path_factory):
    from export.onnx_export import export_model

    out = tmp_path_factory.mktemp("variants") / "tiny"
    export_model(tiny_model, out, precisions=("fp32", "int8", "fp16", "int4"))
    return out


def _initializer_types(path):
    return {onnx.TensorProto.DataType.Name(i.data_type) for i in onnx.load(str(path)).graph.initializer}


def test_manifest_lists_variants_with_their_error(variants):
    m = Manifest.load(variants)
    assert m.precisions == ["fp32", "int8", "fp16", "int4"]
    for precision, files in (("int8", {"prefill.int8.onnx", "step.int8.onnx"}),
                             ("fp16", {"prefill.fp16.onnx", "step.fp16.onnx"}),
                             ("int4", {"prefill.int4.onnx", "step.int4.onnx"})):
        assert {g.file for g in m.variants[precision].values()} == files
        par = m.raw["variants"][precision]["parity"]
        scale = par["prefill"]["max_abs_logits"]
        print(f"{precision}: prefill logits err {par['prefill']['logits']:.2e} (max |logit| {scale:.2f}), "
              f"ssm {par['prefill']['ssm_state_out']:.2e}, step logits {par['step']['logits']:.2e}, "
              f"greedy same prefix {par['greedy']['same_prefix']}")
        limit = {"fp16": 0.02, "int8": 0.25, "int4": 0.5}[precision]  # relative to the largest logit
        assert 0 < par["prefill"]["logits"] <= limit * scale
        assert 0 < par["step"]["logits"] <= limit * scale
    assert m.raw["variants"]["fp16"]["parity"]["greedy"]["same_prefix"] == [8, 8]


def test_variants_change_weights_not_the_state(variants):
    assert "FLOAT16" in _initializer_types(variants / "step.fp16.onnx")
    assert "INT8" in _initializer_types(variants / "step.int8.onnx")
    assert "INT8" in _initializer_types(variants / "prefill.int8.onnx")
    for f in ("prefill.int8.onnx", "prefill.fp16.onnx", "step.int8.onnx", "step.fp16.onnx"):
        model = onnx.load(str(variants / f))
        g = model.graph
        types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.output]}
        assert types["ssm_state"] == types["ssm_state_out"] == onnx.TensorProto.FLOAT, f
        if f.startswith("prefill"):  # the recurrence runs in float32 in every variant: the fused op takes float32
            # only (engines/kernels), and its portable body's Scan carries a float32 state
            assert sum(n.op_type == "SelectiveScan" for n in g.node) == 4, f
            (fn,) = [fn for fn in model.functions if fn.name == "SelectiveScan"]
            scans = [n for n in fn.node if n.op_type == "Scan"]
            assert scans, f
            for n in scans:
                body = next(a.g for a in n.attribute if a.name == "body")
                assert body.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT, f


def test_runtime_picks_a_variant_and_answers_like_fp32(variants, frames):
    answers, logits = {}, {}
    for precision in ("fp32", "int8", "fp16", "int4"):
        rt = Runtime.load(variants, precision=precision, threads=1)
        assert rt.precision == precision
        if precision != "fp32":
            assert rt.engines["prefill"].path.endswith(f"prefill.{precision}.onnx")
            assert rt.stepper.engine is rt.engines["prefill"]  # decoding with the variant's prefill graph too
        s = rt.open_stream("cam")
        answers[precision] = [s.ask(f, p, max_new_tokens=6).token_ids for f in frames[:2] for p in PROMPTS]
        emb = rt.engines["embed"].run({"input_ids": np.arange(3, 40, dtype=np.int64)[None]})["inputs_embeds"]
        conv, ssm = rt.manifest.state.zeros(1)
        logits[precision] = rt.engines["prefill"].run({"inputs_embeds": emb, "conv_state": conv, "ssm_state": ssm})["logits"]
    for precision in ("int8", "fp16", "int4"):
        same = [a == b for a, b in zip(answers[precision], answers["fp32"])]
        err = float(np.abs(logits[precision] - logits["fp32"]).max())
        print(f"{precision}: {sum(same)}/{len(same)} answers equal to fp32's; prefill logits max err {err:.2e}")
        if precision == "fp16":
            assert all(same)
        else:  # the tiny random model's logits are nearly flat (max ~0.6): int8's error flips near-ties; bounded
            assert err <= (0.25 if precision == "int8" else 0.5) * float(np.abs(logits["fp32"]).max())


def test_unknown_or_missing_precision_is_clear(variants, tiny_artifact):
    with pytest.raises(ManifestError, match=r"no 'int8' variant; this artifact has \['fp32'\].*--precision int8"):
        Runtime.load(tiny_artifact, precision="int8")
    from export.precision import check_precisions

    with pytest.raises(ValueError, match=r"unknown precision\(s\) \['int2'\]"):
        check_precisions(("fp32", "int2"))


def test_variant_must_be_listed(variants, tmp_path):
    import shutil

    dst = tmp_path / "v"
    shutil.copytree(variants, dst)
    raw = json.loads((dst / "manifest.json").read_text())
    raw["variants"]["int8"]["graphs"]["step"]["file"] = "step.other.onnx"
    (dst / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=r"variants.int8.graphs.step.file: 'step.other.onnx' is not listed"):
        Manifest.load(dst)


def _refs(path):
    from engines.onnxfile import external_refs

    return {name: (r.offset, r.length) for name, r in external_refs(path).items()}


def test_variants_store_only_what_they_change(variants):
    """Every tensor a variant leaves as it is (norms, conv, A, D, dt bias, the embedding table) is the fp32 graph's
    region of the weights file; the new regions are the changed weights, and the file holds each region once."""
    fp32 = {**_refs(variants / "prefill.onnx"), **_refs(variants / "step.onnx")}
    regions_32 = set(fp32.values())
    for precision in ("int8", "int4", "fp16"):
        refs = {**_refs(variants / f"prefill.{precision}.onnx"), **_refs(variants / f"step.{precision}.onnx")}
        kept = {n for n, r in refs.items() if n in fp32}
        for name in kept:
            if precision != "fp16":  # fp16 changes every weight's bytes
                assert refs[name] == fp32[name], (precision, name)
        new = {r for r in refs.values() if r not in regions_32}
        names_new = sorted(n for n, r in refs.items() if r in new)
        print(precision, len(new), "new regions, e.g.", names_new[:3])
        if precision == "int8":
            assert names_new and all(n.endswith(("_int8", "_int8_scale")) for n in names_new)
        if precision == "int4":
            assert names_new and all(n.endswith(("_int4_quantized", "_int4_scales")) for n in names_new)
        assert any("norm" in n for n in kept) or precision == "fp16"


def _one_gemm_graph(path, w, bias):
    """y = x @ w.T + bias as one Gemm (transB=1), the form every projection takes (export/mamba.py linear)."""
    from onnx import TensorProto, helper, numpy_helper

    n, k = w.shape
    g = helper.make_graph([helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=1, name="proj")], "one_gemm",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["m", k])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["m", n])],
                          [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "b")])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 20)]), str(path))


def test_int8_is_per_row_w8a8(tmp_path):
    """The int8 rewrite of a Gemm computes, in ONNX Runtime, what a numpy W8A8 with a scale per output channel and
    per activation row computes (an all-zero row, a loud row and a row of one outlier among them)."""
    from engines import load_engine
    from export.quantize import quantize_graph, quantize_weight_rows

    rng = np.random.default_rng(0)
    w = (rng.standard_normal((48, 96)) * rng.uniform(0.1, 3, (48, 1))).astype(np.float32)
    bias = rng.standard_normal(48).astype(np.float32)
    x = rng.standard_normal((6, 96)).astype(np.float32)
    x[1] = 0
    x[2] *= 40
    x[3, 7] = 25
    _one_gemm_graph(tmp_path / "f.onnx", w, bias)
    assert quantize_graph(tmp_path / "f.onnx", tmp_path / "q.onnx", "int8") == 1
    got = load_engine("onnxruntime", tmp_path / "q.onnx").run({"x": x})["y"]
    qw, sw = quantize_weight_rows(w)  # [K, N] int8, [N]
    sx = np.maximum(np.abs(x).max(axis=1, keepdims=True), np.float32(1e-30)) * np.float32(1 / 127)
    qx = np.rint(x / sx).astype(np.int32)
    want = (qx @ qw.astype(np.int32)).astype(np.float32) * sw * sx + bias
    assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max()
    assert np.array_equal(got[1], bias)  # a silent row is exact
    exact = x @ w.T + bias
    assert np.abs(got - exact).max() <= 0.02 * np.abs(exact).max()  # and W8A8 is close to float32


@pytest.mark.parametrize("precision", ["int8", "int4", "fp16"])
def test_a_streams_outputs_do_not_depend_on_its_batch(variants, precision):
    """One stream prefilled alone and beside three others (one of them 30 times louder): the same bits. Activation
    scales shared across the batch (ONNX Runtime's DynamicQuantizeLinear, what int8 used before) would let one
    camera change another's answer."""
    from engines import load_engine

    m = Manifest.load(variants)
    rng = np.random.default_rng(3)
    conv, ssm = m.state.zeros(4)
    x = rng.standard_normal((4, 9, m.model["lm"]["d_model"])).astype(np.float32)
    x[2] *= 30
    engine = load_engine("onnxruntime", variants / f"prefill.{precision}.onnx")
    batch = engine.run({"inputs_embeds": x, "conv_state": conv, "ssm_state": ssm})
    alone = engine.run({"inputs_embeds": x[:1], "conv_state": conv[:1], "ssm_state": ssm[:1]})
    for k in alone:
        assert np.array_equal(alone[k], batch[k][:1]), (precision, k, float(np.abs(alone[k] - batch[k][:1]).max()))


def test_keep_float_leaves_the_named_projections_float32(tiny_model, tmp_path):
    """--keep-float out_proj: the int8 graphs keep every out_proj Gemm reading its float32 weight, quantize the
    rest, and the manifest lists what stayed (the mixed variant docs/evaluation.md measures)."""
    from export.onnx_export import export_model

    out = tmp_path / "tiny"
    export_model(tiny_model, out, precisions=("fp32", "int8"), keep_float=("out_proj",))
    entry = json.loads((out / "manifest.json").read_text())["variants"]["int8"]
    layers = tiny_model.cfg.lm.n_layer
    assert entry["float32_weights"] == [f"llm.backbone.layers.{i}.mixer.out_proj.weight" for i in range(layers)]
    assert entry["weights"].endswith("kept float32: out_proj")
    for graph in ("prefill", "step"):
        g = onnx.load(str(out / f"{graph}.int8.onnx"), load_external_data=False).graph
        gemms = sorted(n.input[1] for n in g.node if n.op_type == "Gemm")
        assert gemms == entry["float32_weights"], graph
        quantized = {n.input[1] for n in g.node if n.op_type == "MatMulInteger"}
        assert quantized and not any("out_proj" in q for q in quantized)
        assert any("x_proj" in q for q in quantized) and any("in_proj" in q for q in quantized)
    rt = Runtime.load(out, precision="int8")  # and it runs
    assert rt.precision == "int8"


def test_keep_float_that_names_nothing_is_an_error(tiny_model, tmp_path):
    from export.onnx_export import export_model

    with pytest.raises(ValueError, match="'outproj' names none of the quantized weights; their names contain "
                                         r"dt_proj, in_proj, lm_head, out_proj, x_proj"):
        export_model(tiny_model, tmp_path / "a", precisions=("fp32", "int8"), keep_float=("outproj",))
    with pytest.raises(ValueError, match="applies to the int8 and int4 variants"):
        export_model(tiny_model, tmp_path / "b", precisions=("fp32", "fp16"), keep_float=("out_proj",))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
