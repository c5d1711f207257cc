"""The runtime trusts nothing in an artifact directory."""

import os

import pytest

from edge.errors import ManifestError
from edge.manifest import Manifest, artifact_matches, sha256_file
from edge.runtime import Runtime
from tests.faults import edit_manifest




def test_loads(tiny_artifact):
    m = Manifest.load(tiny_artifact)
    assert m.has_vision and m.image_size == 112 and m.visual_tokens == 64 and m.eos_token_id == 0
    assert m.state.bytes_per_stream == 4 * 128 * 3 * 4 + 4 * 128 * 16 * 4


def test_tampered_graph_is_refused(artifact_copy):
    with open(artifact_copy / "step.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ManifestError, match=r"step.onnx: sha256 mismatch"):
        Runtime.load(artifact_copy)


def test_missing_graph_file(artifact_copy):
    os.remove(artifact_copy / "vision.onnx")
    with pytest.raises(ManifestError, match=r"vision.onnx: listed in the manifest but missing"):
        Manifest.load(artifact_copy)


@pytest.mark.parametrize("path", ["../escape.onnx", "/etc/passwd", "a/../../escape.onnx"])
def test_paths_that_leave_the_directory(artifact_copy, path):
    def edit(raw):
        raw["files"][path] = {"sha256": "0" * 64}
        raw["graphs"]["step"]["file"] = path
    edit_manifest(artifact_copy, edit)
    with pytest.raises(ManifestError, match="leaves the artifact directory"):
        Manifest.load(artifact_copy)


def test_symlink_out_of_the_directory(artifact_copy, tmp_path):
    outside = tmp_path / "outside.onnx"
    outside.write_bytes((artifact_copy / "step.onnx").read_bytes())
    os.remove(artifact_copy / "step.onnx")
    os.symlink(outside, artifact_copy / "step.onnx")
    with pytest.raises(ManifestError, match="resolves outside the artifact directory"):
        Manifest.load(artifact_copy)


def test_unlisted_file_has_no_hash(artifact_copy):
    (artifact_copy / "other.onnx").write_bytes((artifact_copy / "step.onnx").read_bytes())
    edit_manifest(artifact_copy, lambda raw: raw["graphs"]["step"].update(file="other.onnx"))
    with pytest.raises(ManifestError, match="not listed in 'files'"):
        Manifest.load(artifact_copy)


def test_graph_inputs_differ_from_manifest(artifact_copy):
    def rename(raw):
        ins = raw["graphs"]["embed"]["inputs"]
        ins["token_ids"] = ins["input_ids"]
    edit_manifest(artifact_copy, rename)
    with pytest.raises(ManifestError, match=r"embed.onnx: graph 'embed' has inputs \['input_ids'\], manifest says"):
        Runtime.load(artifact_copy)


def test_graph_shape_differs_from_manifest(artifact_copy):
    def edit(raw):  # manifest consistent with itself (image size and pixels agree), but not with the graph file
        raw["graphs"]["vision"]["inputs"]["pixels"].update(shape=["B", 224, 224, 3])
        raw["preprocessing"]["image_size"] = 224

    edit_manifest(artifact_copy, edit)
    with pytest.raises(ManifestError, match=r"graph 'vision' input 'pixels' is uint8\[B, 112, 112, 3\], manifest says uint8\[B, 224, 224, 3\]"):
        Runtime.load(artifact_copy)


def test_state_spec_must_match_graphs(artifact_copy):
    edit_manifest(artifact_copy, lambda raw: raw["state"].update(d_state=8))
    with pytest.raises(ManifestError, match="state spec says"):
        Manifest.load(artifact_copy)


@pytest.mark.parametrize("edit, message", [
    (lambda raw: raw.update(format_version=99), "format_version 99 is not supported"),
    (lambda raw: raw.pop("graphs"), "missing key 'graphs'"),
    (lambda raw: raw["graphs"].pop("step"), r"graphs \['step'\] missing"),
    (lambda raw: raw["graphs"].pop("projector"), "come together"),
    (lambda raw: raw["graphs"].update(decoder=raw["graphs"]["step"]), "unknown graph 'decoder'"),
    (lambda raw: raw.update(prompt_template="no placeholder"), "placeholder"),
    # the manifest's own fields, checked against the graphs that use them (load-time, not mid-stream)
    (lambda raw: raw["preprocessing"].update(image_size=0), r"preprocessing.image_size is 0, but graphs.vision.inputs"
                                                            r".pixels is uint8\[B, 112, 112, 3\]"),
    (lambda raw: raw["preprocessing"].update(image_size=224), "preprocessing.image_size is 224"),
    (lambda raw: raw["preprocessing"].update(image_size="112"), "preprocessing.image_size must be an int >= 0"),
    (lambda raw: raw.update(preprocessing=[]), "preprocessing: expected an object"),
    (lambda raw: raw.update(visual_tokens=65), r"visual_tokens is 65, but graphs.projector.outputs.visual_embeds"),
    (lambda raw: raw.update(prompt_template="{prompt} and {prompt}"), "exactly once, holds it 2 times"),
    (lambda raw: raw["tokenizer"].update(eos_token_id=-1), "eos_token_id must be a token id >= 0"),
    (lambda raw: raw["tokenizer"].update(eos_token_id=True), "eos_token_id must be a token id >= 0"),
    (lambda raw: raw["graphs"]["step"]["inputs"].update(input_ids={"dtype": "int64"}),
     r"graphs.step.inputs.input_ids: expected \{'dtype': str, 'shape'"),
    (lambda raw: raw["state"].update(d_inner=0), "d_inner must be >= 1"),
    (lambda raw: raw.update(variants=["int8"]), "variants: expected an object"),
])
def test_malformed_manifest(artifact_copy, edit, message):
    edit_manifest(artifact_copy, edit)
    with pytest.raises(ManifestError, match=message):
        Manifest.load(artifact_copy)


def test_not_json_and_not_a_directory(artifact_copy, tmp_path):
    with pytest.raises(ManifestError, match="not a directory"):
        Manifest.load(tmp_path / "nope")
    (artifact_copy / "manifest.json").write_text("{")
    with pytest.raises(ManifestError, match="not valid JSON"):
        Manifest.load(artifact_copy)


def test_hash_helper(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_artifact_matches_its_config(artifact_copy):
    """The cache check of demo and bench: the same config (as JSON stores it) matches; others and damage do not."""
    model = Manifest.load(artifact_copy).model
    as_tuples = {**model, "vision": [{**v, "mean": tuple(v["mean"])} for v in model["vision"]]}
    assert artifact_matches(artifact_copy, as_tuples)
    assert not artifact_matches(artifact_copy, {**model, "name": "other"})
    revision = Manifest.load(artifact_copy).raw["export"]["revision"]
    assert artifact_matches(artifact_copy, model, revision=revision)
    assert not artifact_matches(artifact_copy, model, revision="an older exporter")  # a stale cached export
    with open(artifact_copy / "step.onnx", "ab") as f:
        f.write(b"\0")
    assert not artifact_matches(artifact_copy, model)
    assert artifact_matches(artifact_copy, model, verify_hashes=False)
    assert not artifact_matches(artifact_copy.parent / "missing", model)


def test_eos_outside_the_vocabulary_is_refused_at_load(artifact_copy):
    edit_manifest(artifact_copy, lambda raw: raw["tokenizer"].update(eos_token_id=512))
    with pytest.raises(ManifestError, match=r"tokenizer.eos_token_id 512 is outside the model's vocabulary \[0, 512\)"):
        Runtime.load(artifact_copy)


def _rewrite_file(artifact, name, data: bytes):
    """Replace a listed file and its hash, as an attacker (or a bad copy tool) with write access would."""
    (artifact / name).write_bytes(data)
    edit_manifest(artifact, lambda raw: raw["files"][name].update(sha256=sha256_file(artifact / name), bytes=len(data)))


def test_garbage_tokenizer_with_a_matching_hash_is_a_manifest_error(artifact_copy):
    _rewrite_file(artifact_copy, "tokenizer.json", b'{"version": "1.0", "model": 42}')
    with pytest.raises(ManifestError, match=r"tokenizer.json: tokenizer.file cannot be loaded as a tokenizers JSON"):
        Runtime.load(artifact_copy)


def test_tokenizer_of_another_vocabulary_is_refused(artifact_copy):
    from export.tokenizer import build_tiny_tokenizer

    pytest.importorskip("torch")
    big = build_tiny_tokenizer(508)
    big.add_tokens([f"<extra_{i}>" for i in range(20)])  # ids past the model's 512 rows
    top = big.get_vocab_size() - 1
    assert top >= 512
    _rewrite_file(artifact_copy, "tokenizer.json", big.to_str().encode())
    with pytest.raises(ManifestError, match=rf"token ids up to {top}, but the model's vocabulary has 512 rows"):
        Runtime.load(artifact_copy)
