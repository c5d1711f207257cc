"""Precision variants (fp16, int8) of the prefill and step graphs: written, described in the manifest with their
error against fp32, chosen at load, and answering like fp32 on the tiny model's prompts."""

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
    export_model(tiny_model, out, precisions=("fp32", "int8", "fp16"))
    return out


def _initializer_types(path):
    return {onnx.TensorProto.DataType.Name(i.data_type) for i in onnx.load(str(path)).graph.initializer}


def test_manifest_lists_variants_with_their_error(variants):
    m = Manifest.load(variants)
    assert m.precisions == ["fp32", "int8", "fp16"]
    for precision, files in (("int8", {"prefill.int8.onnx", "step.int8.onnx"}),
                             ("fp16", {"prefill.fp16.onnx", "step.fp16.onnx"})):
        assert {g.file for g in m.variants[precision].values()} == files
        par = m.raw["variants"][precision]["parity"]
        scale = par["prefill"]["max_abs_logits"]
        print(f"{precision}: prefill logits err {par['prefill']['logits']:.2e} (max |logit| {scale:.2f}), "
              f"ssm {par['prefill']['ssm_state_out']:.2e}, step logits {par['step']['logits']:.2e}, "
              f"greedy same prefix {par['greedy']['same_prefix']}")
        limit = 0.02 if precision == "fp16" else 0.25  # relative to the largest logit
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
    for precision in ("fp32", "int8", "fp16"):
        rt = Runtime.load(variants, precision=precision, threads=1)
        assert rt.precision == precision
        if precision != "fp32":
            assert rt.engines["step"].path.endswith(f"step.{precision}.onnx")
        s = rt.open_stream("cam")
        answers[precision] = [s.ask(f, p, max_new_tokens=6).token_ids for f in frames[:2] for p in PROMPTS]
        emb = rt.engines["embed"].run({"input_ids": np.arange(3, 40, dtype=np.int64)[None]})["inputs_embeds"]
        conv, ssm = rt.manifest.state.zeros(1)
        logits[precision] = rt.engines["prefill"].run({"inputs_embeds": emb, "conv_state": conv, "ssm_state": ssm})["logits"]
    for precision in ("int8", "fp16"):
        same = [a == b for a, b in zip(answers[precision], answers["fp32"])]
        err = float(np.abs(logits[precision] - logits["fp32"]).max())
        print(f"{precision}: {sum(same)}/{len(same)} answers equal to fp32's; prefill logits max err {err:.2e}")
        if precision == "fp16":
            assert all(same)
        else:  # the tiny random model's logits are nearly flat (max ~0.6): int8's error flips near-ties; bounded
            assert err <= 0.25 * float(np.abs(logits["fp32"]).max())


def test_unknown_or_missing_precision_is_clear(variants, tiny_artifact):
    with pytest.raises(ManifestError, match=r"no 'int8' variant; this artifact has \['fp32'\].*--precision int8"):
        Runtime.load(tiny_artifact, precision="int8")
    from export.precision import check_precisions

    with pytest.raises(ValueError, match=r"unknown precision\(s\) \['int4'\]"):
        check_precisions(("fp32", "int4"))


def test_variant_must_be_listed(variants, tmp_path):
    import shutil

    dst = tmp_path / "v"
    shutil.copytree(variants, dst)
    raw = json.loads((dst / "manifest.json").read_text())
    raw["variants"]["int8"]["graphs"]["step"]["file"] = "step.other.onnx"
    (dst / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match=r"variants.int8.graphs.step.file: 'step.other.onnx' is not listed"):
        Manifest.load(dst)
