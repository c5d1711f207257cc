"""The artifact's shared weights file: refused when missing, truncated, altered, or when a graph refers to data
anywhere else; resident once (a fresh process measures it) and decoding through the prefill graph at L = 1 answers
exactly as the step graph does."""

import subprocess
import sys

import numpy as np
import pytest

from edge.errors import ManifestError
from edge.manifest import Manifest, sha256_file
from edge.runtime import Runtime
from tests.faults import edit_manifest
from tests.conftest import REPO




def test_missing_truncated_or_altered_weights_are_refused_by_name(artifact_copy):
    weights = artifact_copy / "weights.bin"
    data = weights.read_bytes()
    weights.write_bytes(data[:-100])
    with pytest.raises(ManifestError, match=r"weights.bin: sha256 mismatch"):
        Runtime.load(artifact_copy)
    with pytest.raises(ManifestError, match=rf"weights.bin: {len(data) - 100} bytes, the manifest says {len(data)} "
                                            r"\(truncated or replaced\?\)"):
        Runtime.load(artifact_copy, verify_hashes=False)  # without hashing, the size still tells
    altered = bytearray(data)
    altered[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(altered))
    with pytest.raises(ManifestError, match=r"weights.bin: sha256 mismatch"):
        Runtime.load(artifact_copy)
    weights.unlink()
    with pytest.raises(ManifestError, match=r"weights.bin: listed in the manifest but missing"):
        Runtime.load(artifact_copy)


def _point_embed_at(artifact, location: str):
    """Rewrite embed.onnx so its table is read from ``location`` (and re-hash it, as a forger would)."""
    onnx = pytest.importorskip("onnx")
    path = artifact / "embed.onnx"
    model = onnx.load(str(path), load_external_data=False)
    for t in model.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    onnx.save(model, str(path))
    edit_manifest(artifact, lambda raw: raw["files"]["embed.onnx"].update(sha256=sha256_file(path), bytes=path.stat().st_size))


@pytest.mark.parametrize("location", ["other.bin", "../weights.bin", "/etc/passwd"])
def test_a_graph_referring_to_data_elsewhere_is_refused(artifact_copy, location):
    (artifact_copy / "other.bin").write_bytes((artifact_copy / "weights.bin").read_bytes())  # same bytes, unlisted
    _point_embed_at(artifact_copy, location)
    with pytest.raises(ManifestError, match=rf"embed.onnx: initializer 'llm.lm_head.weight' refers to "
                                            rf"'{location}', not to the artifact's weights file 'weights.bin'"):
        Runtime.load(artifact_copy)


def test_a_reference_past_the_end_of_the_file_is_refused(artifact_copy):
    onnx = pytest.importorskip("onnx")
    path = artifact_copy / "embed.onnx"
    model = onnx.load(str(path), load_external_data=False)
    size = (artifact_copy / "weights.bin").stat().st_size
    for e in model.graph.initializer[0].external_data:
        if e.key == "offset":
            e.value = str(size - 64)
    onnx.save(model, str(path))
    edit_manifest(artifact_copy, lambda raw: raw["files"]["embed.onnx"].update(sha256=sha256_file(path),
                                                                       bytes=path.stat().st_size))
    with pytest.raises(ManifestError, match=r"embed.onnx: initializer 'llm.lm_head.weight': bytes .* lie outside "
                                            r"weights.bin"):
        Runtime.load(artifact_copy)


def test_decoding_through_the_prefill_graph_answers_as_the_step_graph(tiny_artifact, frames):
    """The runtime decodes with the prefill graph at L = 1 (one language-model session); the step graph is the
    other way the artifact offers: same tokens, same states."""
    answers, states = {}, {}
    for decode in ("prefill", "step"):
        rt = Runtime.load(tiny_artifact, threads=1, decode=decode)
        assert rt.decode == decode and ("step" in rt.engines) == (decode == "step")
        cam = rt.open_stream("cam", mode="continuous")
        answers[decode] = [cam.ask(f, "What is in the image?", max_new_tokens=8).token_ids for f in frames]
        states[decode] = [s.copy() for s in cam.state]
    assert answers["prefill"] == answers["step"]
    for a, b in zip(states["prefill"], states["step"]):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert Runtime.load(tiny_artifact).decode == "prefill"  # the default where the prefill has the fused conv


@pytest.mark.slow
def test_each_weight_is_resident_once_in_a_fresh_process(tmp_path):
    """A language model of 93 MiB of fp32 weights, exported and loaded in fresh processes (bench/memory.py):
    resident memory the runtime adds to the process by loading it is <= 1.15 x the weights + 64 MiB, and after a
    761-token prefill and a decode step <= 1.25 x + 64 MiB (the interpreter and the imported libraries, measured
    before loading, are the process's, not the runtime's); the artifact is within 1.05 x its distinct weights."""
    pytest.importorskip("torch")
    code = ("import sys; from export.config import MambaConfig, ModelConfig; from export.model import build_random; "
            "from export.onnx_export import export_model; "
            "cfg = ModelConfig(name='lm-93m', lm=MambaConfig(d_model=512, n_layer=8, vocab_size=16384), "
            "prompt_template='{prompt}'); export_model(build_random(cfg), sys.argv[1], precisions=('fp32', 'int8'))")
    art = tmp_path / "lm"
    subprocess.run([sys.executable, "-c", code, str(art)], cwd=REPO, check=True, timeout=600, capture_output=True)
    from bench.memory import run

    doc, _ = run([str(art)], ["fp32", "int8"], tokens=761, threads=2, out_dir=tmp_path)
    MiB = 1 << 20
    for row in doc["rows"]:
        assert "error" not in row, row
        w = row["weights_run"]
        added_load, added_prefill = row["rss_load"] - row["rss_base"], row["rss_prefill"] - row["rss_base"]
        print(f"{row['precision']}: weights {w / MiB:.1f} MiB, added by load {added_load / MiB:.1f}, after a prefill "
              f"{added_prefill / MiB:.1f} MiB; artifact {row['artifact_bytes'] / MiB:.1f} MiB for "
              f"{row['unique_weight_bytes'] / MiB:.1f} MiB of distinct weights")
        assert added_load <= 1.15 * w + 64 * MiB
        assert added_prefill <= 1.25 * w + 64 * MiB
        # while loading, a session's weights are mapped and pre-packed at once (then the mapped pages go): one
        # graph's weights twice at most, not every session's copy on top
        assert row["rss_load_peak"] - row["rss_base"] <= 2.2 * w + 64 * MiB
        assert row["artifact_bytes"] <= 1.05 * row["unique_weight_bytes"]
    m = Manifest.load(art)
    assert m.raw["weights"]["bytes"] == (art / "weights.bin").stat().st_size


def _mapped_rss(path) -> int:
    """Resident bytes of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if len(head) >= 5 and "-" in head[0] and ":" in head[3]:  # a mapping's first line
                inside = line.rstrip("\n").endswith(str(path))
            elif inside and line.startswith("Rss:"):
                total += int(head[1]) * 1024
    return total


def test_release_drops_only_the_pages_of_the_given_arrays(tmp_path):
    """Runtime.load releases each graph's mapped pages once its session is made: the others' stay resident."""
    from engines.onnxfile import ExternalRef
    from engines.weights import MappedWeights

    path = tmp_path / "weights.bin"
    MiB = 1 << 20
    path.write_bytes(np.arange(16 * MiB // 4, dtype=np.float32).tobytes())
    w = MappedWeights(path)
    first = w.array(ExternalRef("a", path.name, 0, 8 * MiB, "float32", (2 * MiB,)))
    second = w.array(ExternalRef("b", path.name, 8 * MiB, 8 * MiB, "float32", (2 * MiB,)))
    assert first.sum(dtype=np.float64) > 0 and second.sum(dtype=np.float64) > 0  # touch every page
    assert _mapped_rss(path) >= 15 * MiB
    w.release({"a": first})
    assert 7 * MiB <= _mapped_rss(path) <= 9 * MiB
    assert first[-1] == 2 * MiB - 1  # dropped pages are read again from the file when touched
    w.release()
    assert _mapped_rss(path) <= 1 * MiB
