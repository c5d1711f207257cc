"""Loaders: round trips for every format, strict and safe loading, clear errors; real-dimension presets."""

import json
import os
import subprocess
import sys
import time

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from export.checkpoints import CheckpointError, read_state_dict  # noqa: E402
from export.config import preset  # noqa: E402
from export.loaders import build_from_checkpoint, cobra_config, detect_format  # noqa: E402
from export.model import CobraModel, build_random  # noqa: E402
from export.projector import TokenDown  # noqa: E402
from export.tokenizer import build_tiny_tokenizer  # noqa: E402
from tests.conftest import REPO  # noqa: E402


def _tok(folder):
    build_tiny_tokenizer(508).save(str(folder / "tokenizer.json"))


def _assert_same(a: torch.nn.Module, b: torch.nn.Module, skip=()):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        if not k.startswith(skip):
            assert torch.equal(sa[k], sb[k]), k


# --- formats -------------------------------------------------------------------------------------------

def test_mamba_ssm_folder_round_trip(tmp_path):
    src = build_random(preset("tiny"), seed=5).llm
    folder = tmp_path / "mamba-ssm"
    folder.mkdir()
    cfg = src.cfg
    (folder / "config.json").write_text(json.dumps({
        "d_model": cfg.d_model, "n_layer": cfg.n_layer, "vocab_size": cfg.vocab_size, "ssm_cfg": {},
        "rms_norm": True, "residual_in_fp32": True, "fused_add_norm": True, "pad_vocab_size_multiple": 8}))
    torch.save(src.state_dict(), folder / "pytorch_model.bin")
    _tok(folder)
    assert detect_format(folder) == "mamba-ssm"
    model, tok = build_from_checkpoint(folder)
    assert model.cfg.lm.vocab_padded == 512 and not model.cfg.has_vision and tok == folder / "tokenizer.json"
    _assert_same(model.llm, src)


@pytest.mark.parametrize("safe", [True, False])
def test_hf_folder_round_trip(tmp_path, safe):
    transformers = pytest.importorskip("transformers")
    hf = transformers.MambaForCausalLM(transformers.MambaConfig(vocab_size=256, hidden_size=32, num_hidden_layers=2,
                                                                state_size=8))
    folder = tmp_path / "hf"
    hf.save_pretrained(folder)
    if not safe:  # transformers 5 writes safetensors only; older releases wrote this file with torch.save
        os.remove(folder / "model.safetensors")
        torch.save(hf.state_dict(), folder / "pytorch_model.bin")
    assert (folder / ("model.safetensors" if safe else "pytorch_model.bin")).exists()
    _tok(folder)
    assert detect_format(folder) == "hf-mamba"
    model, _ = build_from_checkpoint(folder)
    theirs = {k.replace("embeddings", "embedding"): v for k, v in hf.state_dict().items()}
    for k, v in model.llm.state_dict().items():
        assert torch.equal(v, theirs[k]), k


def _write_cobra(tmp_path, src: CobraModel, vision_grid=None):
    """A Cobra run directory as the reference code writes it, and timm-named vision files (one of each kind)."""
    folder = tmp_path / "cobra+tiny"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"model": {
        "model_id": "cobra+3b", "vision_backbone_id": "dinosiglip-vit-so-384px", "llm_backbone_id": "mamba-2.8b-zephyr",
        "arch_specifier": "no-align+fused-gelu-mlp", "image_resize_strategy": "resize-naive"}}))
    llm = {f"llm.{k}": v for k, v in src.llm.state_dict().items()}
    torch.save({"model": {"projector": src.projector.state_dict(), "llm_backbone": llm}},
               folder / "checkpoints" / "latest-checkpoint.pt")
    _tok(folder)
    from safetensors.torch import save_file

    paths = []
    for enc, fmt in zip(src.vision.encoders, ("safetensors", "bin")):
        sd = {k: v.clone() for k, v in enc.state_dict().items()}
        depth = enc.cfg.blocks_used
        sd.update({"norm.weight": torch.ones(enc.cfg.width), "head.weight": torch.zeros(3, enc.cfg.width),
                   f"blocks.{depth}.mlp.fc1.weight": torch.zeros(2, 2)})  # parts Cobra does not use
        path = tmp_path / f"{enc.cfg.name}.{fmt}"
        save_file(sd, str(path)) if fmt == "safetensors" else torch.save(sd, path)
        paths.append(f"{enc.cfg.name}={path}")
    return folder, paths


def test_cobra_checkpoint_round_trip(tmp_path):
    src = build_random(preset("tiny"), seed=7)
    folder, vision = _write_cobra(tmp_path, src)
    assert detect_format(folder) == "cobra"
    model, _ = build_from_checkpoint(folder, vision, preset_name="tiny")
    _assert_same(model, src)


def test_vision_weights_matched_by_width_and_pos_embed_resampled(tmp_path):
    src = build_random(preset("tiny"), seed=8)
    folder, vision = _write_cobra(tmp_path, src)
    bare = [v.split("=", 1)[1] for v in vision]  # no names: matched by patch-embedding width
    dino_path = bare[0]
    sd = read_state_dict(dino_path)
    grid = src.vision.encoders[0].cfg.grid
    big = F.interpolate(sd["pos_embed"].reshape(1, grid, grid, -1).permute(0, 3, 1, 2), size=(12, 12), mode="bilinear")
    sd["pos_embed"] = big.permute(0, 2, 3, 1).reshape(1, 144, -1).contiguous()
    from safetensors.torch import save_file

    save_file(sd, dino_path)
    model, _ = build_from_checkpoint(folder, list(reversed(bare)), preset_name="tiny")
    _assert_same(model, src, skip=("vision.encoders.0.pos_embed",))
    assert model.vision.encoders[0].pos_embed.shape == (1, grid * grid, 64)


def test_cli_exports_a_cobra_checkpoint(tmp_path):
    folder, vision = _write_cobra(tmp_path, build_random(preset("tiny"), seed=9))
    out = tmp_path / "art"
    r = subprocess.run([sys.executable, "-m", "edge.cli", "export", "--checkpoint", str(folder), "--preset", "tiny",
                        "--vision-weights", *vision, "--out", str(out)], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([sys.executable, "-m", "edge.cli", "inspect", str(out)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 0 and "cobra+3b" in r.stdout and "64 visual tokens" in r.stdout


def test_cobra_config_maps_to_presets(tmp_path):
    for arch, vision_id, want_proj, tokens in [
        ("no-align+fused-gelu-mlp", "dinosiglip-vit-so-384px", "fused-gelu-mlp", 729),
        ("no-align+gelu-mlp", "siglip-vit-so400m-384px", "gelu-mlp", 729),
        ("no-align+fused-ldpnet", "dinosiglip-vit-so-384px", "fused-ldpnet", 196),
    ]:
        (tmp_path / "config.json").write_text(json.dumps({"model": {
            "model_id": "x", "vision_backbone_id": vision_id, "llm_backbone_id": "mamba-2.8b-zephyr",
            "arch_specifier": arch}}))
        cfg = cobra_config(tmp_path)
        assert cfg.projector == want_proj and cfg.num_visual_tokens == tokens and cfg.lm.n_layer == 64
        assert cfg.prompt_template.startswith("<|user|>")


# --- errors ----------------------------------------------------------------------------------------------

def _mamba_folder(tmp_path, **config):
    folder = tmp_path / "m"
    folder.mkdir(exist_ok=True)
    src = build_random(preset("tiny"), seed=1).llm
    base = {"d_model": 64, "n_layer": 4, "vocab_size": 508, "ssm_cfg": {}, "rms_norm": True}
    (folder / "config.json").write_text(json.dumps({**base, **config}))
    torch.save(src.state_dict(), folder / "pytorch_model.bin")
    _tok(folder)
    return folder


# seeds whose 1000 random bytes make torch's weights-only unpickler raise, in turn: UnpicklingError,
# IndexError, UnicodeDecodeError, KeyError, RuntimeError (found by search; torch 2.13)
@pytest.mark.parametrize("seed", [0, 17, 54, 62, 941])
def test_corrupt_file_names_the_file(tmp_path, seed):
    """Garbage makes the unpickler fail in many ways: the loader always answers with one error naming the file."""
    import numpy as np

    folder = _mamba_folder(tmp_path)
    (folder / "pytorch_model.bin").write_bytes(np.random.default_rng(seed).bytes(1000))
    with pytest.raises(CheckpointError, match=r"pytorch_model.bin: cannot be read as a checkpoint"):
        build_from_checkpoint(folder)


def test_truncated_safetensors(tmp_path):
    from safetensors.torch import save_file

    folder = _mamba_folder(tmp_path)
    sd = torch.load(folder / "pytorch_model.bin", weights_only=True)
    sd.pop("lm_head.weight")  # tied: safetensors stores one copy
    os.remove(folder / "pytorch_model.bin")
    save_file(sd, str(folder / "model.safetensors"))
    data = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model.safetensors: cannot be read .*truncated"):
        build_from_checkpoint(folder)


def test_wrong_architecture(tmp_path):
    folder = _mamba_folder(tmp_path, model_type="llama")
    with pytest.raises(CheckpointError, match=r"config.json: model_type 'llama' is not a Mamba-1"):
        build_from_checkpoint(folder)
    folder = _mamba_folder(tmp_path, model_type=None, ssm_cfg={"layer": "Mamba2"})
    with pytest.raises(CheckpointError, match="only Mamba-1"):
        build_from_checkpoint(folder)


def test_wrong_shape_lists_conflicts(tmp_path):
    folder = _mamba_folder(tmp_path, d_model=48)
    with pytest.raises(CheckpointError) as e:
        build_from_checkpoint(folder)
    msg = str(e.value)
    print(msg)
    assert "pytorch_model.bin" in msg and "shape conflicts" in msg and "(512, 64) vs model (512, 48)" in msg


def test_missing_and_unexpected_keys(tmp_path):
    folder = _mamba_folder(tmp_path)
    sd = torch.load(folder / "pytorch_model.bin", weights_only=True)
    sd.pop("backbone.layers.2.mixer.A_log")
    sd["backbone.layers.9.mixer.D"] = torch.zeros(3)
    torch.save(sd, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"1 missing: backbone.layers.2.mixer.A_log; 1 unexpected: backbone.layers.9"):
        build_from_checkpoint(folder)


def test_untied_head_is_refused(tmp_path):
    folder = _mamba_folder(tmp_path)
    sd = torch.load(folder / "pytorch_model.bin", weights_only=True)
    sd["lm_head.weight"] = sd["lm_head.weight"] + 1
    torch.save(sd, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match="lm_head differs from the embedding"):
        build_from_checkpoint(folder)


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/cobra-edge-pwned",))


def test_pickles_never_run_code(tmp_path):
    folder = _mamba_folder(tmp_path)
    torch.save({"x": _Exploit()}, folder / "pytorch_model.bin")
    if os.path.exists("/tmp/cobra-edge-pwned"):
        os.remove("/tmp/cobra-edge-pwned")
    with pytest.raises(CheckpointError, match="cannot be read"):
        build_from_checkpoint(folder)
    assert not os.path.exists("/tmp/cobra-edge-pwned")


def test_missing_tokenizer_and_vision_weights(tmp_path):
    folder = _mamba_folder(tmp_path)
    os.remove(folder / "tokenizer.json")
    with pytest.raises(CheckpointError, match="no tokenizer.json; give --tokenizer"):
        build_from_checkpoint(folder)
    cobra, _ = _write_cobra(tmp_path, build_random(preset("tiny")))
    with pytest.raises(CheckpointError, match=r"vision weights missing for encoder\(s\) \['dinov2', 'siglip'\]"):
        build_from_checkpoint(cobra, [], preset_name="tiny")
    with pytest.raises(CheckpointError, match="no encoder named 'clip'"):
        build_from_checkpoint(cobra, [f"clip={folder}/x"], preset_name="tiny")


def test_not_a_checkpoint_folder(tmp_path):
    with pytest.raises(CheckpointError, match="expected a checkpoint folder"):
        detect_format(tmp_path / "nope")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="neither a Hugging Face Mamba config"):
        detect_format(tmp_path)


# --- presets with real dimensions --------------------------------------------------------------------------

@pytest.mark.parametrize("name, llm_params", [
    ("mamba-130m", 129.1e6), ("mamba-370m", 371.5e6), ("mamba-790m", 793.2e6), ("mamba-1.4b", 1.372e9),
    ("mamba-2.8b", 2.768e9),
])
def test_mamba_presets_parameter_counts(name, llm_params):
    cfg = preset(name)
    with torch.device("meta"):
        model = CobraModel(cfg)
    n = sum(p.numel() for p in model.llm.parameters())
    print(f"{name}: {n:,} parameters, {cfg.lm.vocab_padded} vocab")
    assert abs(n - llm_params) / llm_params < 0.002
    assert cfg.lm.vocab_padded == 50280


def test_cobra_presets_have_cobra_shapes():
    from edge.state import StateSpec

    cfg = preset("cobra-3b")
    assert (cfg.image_size, cfg.num_visual_tokens, cfg.d_vision) == (384, 729, 2176)
    with torch.device("meta"):
        model = CobraModel(cfg)
    proj = sum(p.numel() for p in model.projector.parameters())
    assert proj == 2176 * 8704 + 8704 + 8704 * 2560 + 2560 + 2560 * 2560 + 2560
    lm = cfg.lm
    state = StateSpec(lm.n_layer, lm.d_inner, lm.d_conv, lm.d_state)
    print(f"cobra-3b: state {state.bytes_per_stream:,} bytes per stream")
    assert state.bytes_per_stream == 64 * 5120 * (3 + 16) * 4  # ~25 MB with a float32 conv state
    assert preset("cobra-ldp-3b").num_visual_tokens == 196
    assert preset("cobra-siglip-3b").d_vision == 1152


@pytest.mark.parametrize("grid_in, grid_out", [(27, 14), (8, 3), (6, 6)])
def test_ldp_pooling_equals_adaptive_avg_pool(grid_in, grid_out):
    x = torch.randn(2, grid_in * grid_in, 5)
    grid = x.transpose(1, 2).reshape(2, 5, grid_in, grid_in)
    want = F.adaptive_avg_pool2d(grid, grid_out).flatten(2).transpose(1, 2)
    err = float((TokenDown(grid_in, grid_out)(x) - want).abs().max())
    print(f"TokenDown {grid_in}->{grid_out}: max abs err {err:.2e}")
    assert err < 1e-6


# --- faults: NaN weights, checkpoints that do not fit the config (checked before any model is allocated) ------

def test_export_refuses_a_checkpoint_with_one_nan_weight(tmp_path):
    """Before: parity combined errors with max(), max(0.0, nan) is 0.0, and the artifact answered '' to all."""
    folder = _mamba_folder(tmp_path)
    state = torch.load(folder / "pytorch_model.bin", weights_only=True)
    state["backbone.layers.2.mixer.x_proj.weight"][3, 7] = float("nan")
    torch.save(state, folder / "pytorch_model.bin")
    out = tmp_path / "art"
    r = subprocess.run([sys.executable, "-m", "edge.cli", "export", "--checkpoint", str(folder), "--out", str(out)],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2, r.stdout + r.stderr
    assert ("weight llm.backbone.layers.2.mixer.x_proj.weight (36, 128) holds 1 NaN or infinite value(s) "
            "(first at index (3, 7), nan); export refused") in r.stderr
    assert "Traceback" not in r.stderr and not out.exists()


def test_parity_check_refuses_nan_outputs_by_name(tmp_path):
    """Non-finite values fail parity naming graph, output and side, instead of vanishing in max(0.0, nan) == 0.0."""
    from export.errors import ParityError
    from export.graphs import graph_defs
    from export.onnx_export import _export_graph, check_parity

    model = build_random(preset("tiny"), seed=0)
    gdef = next(g for g in graph_defs(model) if g.name == "embed")
    _export_graph(model, gdef, tmp_path / "embed.onnx")
    with torch.no_grad():
        model.llm.backbone.embedding.weight[5, 0] = float("inf")  # the reference now disagrees with the file
    with pytest.raises(ParityError, match=r"graph 'embed', output 'inputs_embeds': the PyTorch reference holds \d+ NaN"):
        check_parity(model, gdef, tmp_path / "embed.onnx", cases=((1, 400),))


def test_a_cobra_config_that_does_not_fit_its_checkpoint_fails_before_allocating(tmp_path):
    """A Cobra config.json (cobra-3b's dimensions) beside a tiny checkpoint, exported without --preset: the
    checkpoint is read and compared with the config's shapes on the meta device, so the 3B model is never
    allocated (before: 10.8 GB after 80 s, then the shape error)."""
    folder, vision = _write_cobra(tmp_path, build_random(preset("tiny"), seed=9))
    code = ("import resource, sys, time; from edge.cli import main; t = time.time(); rc = main(sys.argv[1:]); "
            "print('RESULT', rc, round(time.time() - t, 1), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")
    r = subprocess.run([sys.executable, "-c", code, "export", "--checkpoint", str(folder), "--vision-weights", *vision,
                        "--out", str(tmp_path / "art")], cwd=REPO, capture_output=True, text=True, timeout=300,
                       env={**os.environ, "COBRA_EDGE_SKIP_MEMORY_CHECK": "1"})  # past the memory estimate
    rc, seconds, peak_kb = r.stdout.split("RESULT")[1].split()
    print(r.stderr, seconds, "s", int(peak_kb) // 1024, "MiB")
    assert rc == "2" and "does not fit the projector of 'cobra+3b' (fused-gelu-mlp)" in r.stderr
    assert "shape conflicts" in r.stderr
    assert int(peak_kb) < 2 * 2**20  # KiB: well under the 10.8 GB a random 3B model took


def test_an_export_too_large_for_the_machine_fails_early_naming_both_numbers(monkeypatch, capsys):
    """Before any model is built: the estimate (1.15x the float32 weights + 1 GiB, counted on the meta device)
    against MemAvailable, one line, exit 2 (instead of the kernel's OOM killer half way through)."""
    import export.memory as memory
    from edge.cli import main

    monkeypatch.setattr(memory, "available_bytes", lambda: 4 << 30)
    t0 = time.monotonic()
    assert main(["export", "--preset", "cobra-3b", "--out", "unused"]) == 2
    err = capsys.readouterr().err
    assert "exporting preset 'cobra-3b' needs about 16.0 GiB of memory (its 13.1 GiB of float32 weights, the " \
           "exporter); this machine has 4.0 GiB available" in err
    assert time.monotonic() - t0 < 30
    monkeypatch.setenv("COBRA_EDGE_SKIP_MEMORY_CHECK", "1")
    assert memory.check_memory(preset("tiny"), "tiny") > 0
