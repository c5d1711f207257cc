"""Build a model from checkpoints on local disk, chosen by what is on disk (never the network).

Formats:
- Hugging Face Mamba folder: ``config.json`` (``model_type: mamba``, ``hidden_size``...) +
  ``model.safetensors`` or ``pytorch_model.bin``; keys ``backbone.embeddings``, ``backbone.layers.N.mixer.*``.
- mamba_ssm folder: ``config.json`` (``d_model``, ``n_layer``, ``vocab_size``, ``ssm_cfg``,
  ``pad_vocab_size_multiple``) + ``pytorch_model.bin`` (or .safetensors); keys ``backbone.embedding``...
- Cobra: ``config.json`` + ``checkpoints/latest-checkpoint.pt`` = {"model": {"projector": ...,
  "llm_backbone": ...}} (LLM keys under ``llm.``); vision weights come separately, in timm's naming.
- timm ViT weights (DINOv2 with registers, SigLIP) as .safetensors or .bin, given per encoder.
- ``tokenizer.json`` of the language model (GPT-NeoX's for Mamba), from the folder or given.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from .checkpoints import CheckpointError, check_fits, load_strict, read_json, read_state_dict
from .config import MambaConfig, ModelConfig, cobra_3b, cobra_ldp_3b, cobra_siglip_3b, preset
from .mamba import MambaLM
from .memory import check_memory
from .model import CobraModel, build_random
from .vision import ViTEncoder

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
COBRA_CHECKPOINT = Path("checkpoints") / "latest-checkpoint.pt"
# Cobra's vision_backbone_id / llm_backbone_id -> our presets
COBRA_VISION = {"dinosiglip-vit-so-384px": cobra_3b, "siglip-vit-so400m-384px": cobra_siglip_3b}
# Unused by Cobra: blocks after the feature block, final norms, classifier/pooling heads
VIT_UNUSED = ("norm.", "fc_norm.", "head", "attn_pool.", "mask_token")
CONVNEXT_UNUSED = ("head.", "norm_pre.")  # the classifier head (timm's norm_pre is an Identity without weights)


def detect_format(path: str | Path) -> str:
    """'cobra', 'hf-mamba' or 'mamba-ssm' for a folder; error naming what is missing otherwise."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"{path}: expected a checkpoint folder (config.json + weights)")
    if (path / COBRA_CHECKPOINT).is_file():
        return "cobra"
    cfg = read_json(path / "config.json")
    model_type = cfg.get("model_type")
    if model_type not in (None, "mamba"):
        raise CheckpointError(
            f"{path / 'config.json'}: model_type {model_type!r} is not a Mamba-1 language model (cobra-edge exports "
            "Mamba-1: model_type 'mamba')"
        )
    if "hidden_size" in cfg:
        return "hf-mamba"
    if "d_model" in cfg:
        return "mamba-ssm"
    raise CheckpointError(f"{path / 'config.json'}: neither a Hugging Face Mamba config (hidden_size) nor a mamba_ssm one (d_model)")


def mamba_config_from_json(cfg: dict, source: str) -> MambaConfig:
    try:
        if "hidden_size" in cfg:  # Hugging Face: vocab_size is the embedding's row count already
            return MambaConfig(
                d_model=cfg["hidden_size"], n_layer=cfg["num_hidden_layers"], vocab_size=cfg["vocab_size"],
                d_state=cfg.get("state_size", 16), d_conv=cfg.get("conv_kernel", 4), expand=cfg.get("expand", 2),
                dt_rank=cfg.get("time_step_rank", "auto"), pad_vocab_size_multiple=1,
                norm_eps=cfg.get("layer_norm_epsilon", 1e-5), conv_bias=cfg.get("use_conv_bias", True),
                bias=cfg.get("use_bias", False),
            )
        ssm = dict(cfg.get("ssm_cfg") or {})
        if ssm.get("layer", "Mamba1") != "Mamba1":
            raise CheckpointError(f"{source}: ssm_cfg.layer {ssm['layer']!r}: only Mamba-1 is supported")
        if not cfg.get("rms_norm", True):
            raise CheckpointError(f"{source}: rms_norm is false (LayerNorm Mamba); only RMSNorm models are supported")
        return MambaConfig(
            d_model=cfg["d_model"], n_layer=cfg["n_layer"], vocab_size=cfg["vocab_size"],
            d_state=ssm.get("d_state", 16), d_conv=ssm.get("d_conv", 4), expand=ssm.get("expand", 2),
            dt_rank=ssm.get("dt_rank", "auto"), pad_vocab_size_multiple=cfg.get("pad_vocab_size_multiple", 8),
            norm_eps=cfg.get("norm_epsilon", 1e-5), conv_bias=ssm.get("conv_bias", True), bias=ssm.get("bias", False),
        )
    except KeyError as e:
        raise CheckpointError(f"{source}: config lacks {e}") from None


def normalize_lm_keys(state: dict[str, torch.Tensor], source: str, prefix: str = "") -> dict[str, torch.Tensor]:
    """Our (mamba_ssm) names from HF/mamba_ssm/Cobra names; the tied lm_head is checked, then dropped."""
    out = {}
    for k, v in state.items():
        if prefix:
            if not k.startswith(prefix):
                continue
            k = k[len(prefix):]
        k = k.replace("backbone.embeddings.", "backbone.embedding.")
        out[k] = v
    head = out.pop("lm_head.weight", None)
    emb = out.get("backbone.embedding.weight")
    if head is not None and emb is not None and (head.shape != emb.shape or not torch.equal(head, emb)):
        raise CheckpointError(f"{source}: lm_head differs from the embedding; only tied-head Mamba models are supported")
    return out


def _weights_file(folder: Path) -> Path:
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    sharded = sorted(folder.glob("model-*.safetensors"))
    if sharded:
        raise CheckpointError(f"{folder}: sharded safetensors ({sharded[0].name}, ...) are not supported yet; merge them")
    raise CheckpointError(f"{folder}: no weights file (looked for {', '.join(WEIGHT_FILES)})")


def load_mamba_folder(folder: str | Path) -> tuple[MambaConfig, dict[str, torch.Tensor], Path]:
    """(config, state dict in our names, the weights file) of a Hugging Face or mamba_ssm Mamba folder."""
    folder = Path(folder)
    cfg = mamba_config_from_json(read_json(folder / "config.json"), str(folder / "config.json"))
    wfile = _weights_file(folder)
    return cfg, normalize_lm_keys(read_state_dict(wfile), str(wfile)), wfile


def load_lm_into(lm: MambaLM, state: dict[str, torch.Tensor], source: str) -> None:
    """Strict load of a normalised LM state dict (the tied head is the embedding)."""
    load_strict(lm, _tied(state), source)


def _resample_pos_embed(pos: torch.Tensor, enc: ViTEncoder, source: str) -> torch.Tensor:
    """timm's bicubic (antialiased) resampling of the patch position grid, e.g. DINOv2's 37x37 (518 px) to 27x27."""
    want = enc.pos_embed.shape
    if pos.shape == want:
        return pos
    n_prefix = 0 if enc.cfg.no_embed_class else enc.cfg.num_prefix_tokens
    prefix, grid = pos[:, :n_prefix], pos[:, n_prefix:]
    g_old = int(round(grid.shape[1] ** 0.5))
    if g_old * g_old != grid.shape[1] or pos.shape[-1] != want[-1]:
        raise CheckpointError(f"{source}: pos_embed {tuple(pos.shape)} cannot be resampled to {tuple(want)}")
    g = enc.cfg.grid
    grid = grid.reshape(1, g_old, g_old, -1).permute(0, 3, 1, 2).float()
    grid = F.interpolate(grid, size=(g, g), mode="bicubic", antialias=True, align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, g * g, -1).to(pos.dtype)
    return torch.cat([prefix, grid], dim=1)


def load_vit_weights(enc: ViTEncoder, path: str | Path, state: dict[str, torch.Tensor] | None = None) -> None:
    """timm-named weights into one encoder (a ViT, or a ConvNeXt); later ViT blocks and heads are ignored on
    purpose (listed in VIT_UNUSED / CONVNEXT_UNUSED).

    state: the file's tensors when the caller has read them already (read from ``path`` otherwise).
    """
    state = dict(read_state_dict(path) if state is None else state)
    if enc.cfg.kind == "convnext":
        unused = CONVNEXT_UNUSED
    else:
        unused = tuple(f"blocks.{i}." for i in range(enc.cfg.blocks_used, 512)) + VIT_UNUSED
    if "pos_embed" in state:
        state["pos_embed"] = _resample_pos_embed(state["pos_embed"], enc, str(path))
    load_strict(enc, state, f"{path} (vision encoder {enc.cfg.name!r})", ignore_unexpected=unused)


def _match_vision_files(model: CobraModel, vision_weights: list[str]) -> dict[int, tuple[Path, dict | None]]:
    """encoder index -> (file, its tensors if already read). 'name=path' picks the encoder by name; a bare path
    is read to match it by its patch embedding width (and its tensors are kept, so it is read once)."""
    encoders = list(model.vision.encoders)
    chosen: dict[int, tuple[Path, dict | None]] = {}
    for item in vision_weights:
        name, sep, p = item.partition("=")
        if sep:
            idx = [i for i, e in enumerate(encoders) if e.cfg.name == name]
            if not idx:
                raise CheckpointError(f"--vision-weights {item}: no encoder named {name!r}; this model has "
                                      f"{[e.cfg.name for e in encoders]}")
            chosen[idx[0]] = (Path(p), None)
            continue
        state = read_state_dict(item)
        width = state.get("patch_embed.proj.weight")
        idx = [i for i, e in enumerate(encoders) if width is not None and e.cfg.width == width.shape[0] and i not in chosen]
        if len(idx) != 1:
            raise CheckpointError(f"{item}: cannot tell which encoder it belongs to; write name=path with a name in "
                                  f"{[e.cfg.name for e in encoders]}")
        chosen[idx[0]] = (Path(item), state)
    missing = [encoders[i].cfg.name for i in range(len(encoders)) if i not in chosen]
    if missing:
        raise CheckpointError(f"vision weights missing for encoder(s) {missing}: give --vision-weights name=path "
                              "(timm-named .safetensors or .bin)")
    return chosen


def _cobra_model_section(folder: Path) -> dict:
    """The "model" section of a Cobra run's config.json (or the whole file where it is flat)."""
    raw = read_json(folder / "config.json")
    section = raw.get("model", raw)
    if not isinstance(section, dict):
        raise CheckpointError(f"{folder / 'config.json'}: 'model' is not an object")
    return section


def cobra_config(folder: Path) -> ModelConfig:
    """The preset a Cobra config.json describes (vision backbone, arch_specifier, LLM)."""
    m = _cobra_model_section(folder)
    vision_id, arch, llm_id = m.get("vision_backbone_id"), m.get("arch_specifier", ""), m.get("llm_backbone_id", "")
    if vision_id not in COBRA_VISION:
        raise CheckpointError(f"{folder / 'config.json'}: vision_backbone_id {vision_id!r} not supported; "
                              f"known: {sorted(COBRA_VISION)} (or pass --preset)")
    if not str(llm_id).startswith("mamba-2.8b"):
        raise CheckpointError(f"{folder / 'config.json'}: llm_backbone_id {llm_id!r} not supported (or pass --preset)")
    kind = str(arch).split("+")[-1]
    cfg = cobra_ldp_3b() if kind == "fused-ldpnet" else COBRA_VISION[vision_id]()
    cfg = replace(cfg, name=str(m.get("model_id", cfg.name)), projector=kind)
    if not llm_id.endswith("zephyr"):
        cfg = replace(cfg, prompt_template="In: {prompt}\nOut: ")  # Cobra's MambaPromptBuilder for base LMs
    return cfg


def _tokenizer_for(folder: Path, tokenizer: str | Path | None) -> Path:
    if tokenizer:
        path = Path(tokenizer)
        if not path.is_file():
            raise CheckpointError(f"--tokenizer {path}: no such file")
        return path
    if (folder / "tokenizer.json").is_file():
        return folder / "tokenizer.json"
    raise CheckpointError(f"{folder}: no tokenizer.json; give --tokenizer PATH (the language model's tokenizer.json, "
                          "GPT-NeoX's for Mamba)")


def _eos_id(tokenizer_path: Path) -> int:
    from tokenizers import Tokenizer

    tid = Tokenizer.from_file(str(tokenizer_path)).token_to_id("<|endoftext|>")
    return 0 if tid is None else int(tid)


def build_from_checkpoint(checkpoint: str | Path, vision_weights: list[str] | None = None,
                          preset_name: str | None = None, tokenizer: str | Path | None = None) -> tuple[CobraModel, Path]:
    """The model a checkpoint folder holds, and its tokenizer.json path.

    preset_name: take dimensions from a preset instead of the checkpoint's config (weights must fit it).
    """
    folder = Path(checkpoint)
    kind = detect_format(folder)
    tok = _tokenizer_for(folder, tokenizer)
    if kind == "cobra":
        if preset_name:  # the preset's dimensions, the checkpoint's name
            model_id = _cobra_model_section(folder).get("model_id") or folder.name
            cfg = replace(preset(preset_name), name=str(model_id))
        else:
            cfg = cobra_config(folder)
        cfg = replace(cfg, eos_token_id=_eos_id(tok))
        check_memory(cfg, f"checkpoint {folder}")
        ckpt_path = folder / COBRA_CHECKPOINT
        ckpt = read_state_dict(ckpt_path)  # read and checked against the config's shapes before any model exists
        parts = ckpt.get("model") if isinstance(ckpt.get("model"), dict) else None
        if parts is None or "projector" not in parts or "llm_backbone" not in parts:
            raise CheckpointError(f"{ckpt_path}: expected {{'model': {{'projector': ..., 'llm_backbone': ...}}}}, got keys "
                                  f"{sorted(ckpt)[:5]}")
        lm_state = normalize_lm_keys(parts["llm_backbone"], str(ckpt_path), prefix="llm.")
        shapes = _shapes_only(cfg)
        check_fits(shapes.projector.state_dict(), parts["projector"], f"{ckpt_path} [model.projector]",
                   f"the projector of {cfg.name!r} ({cfg.projector})")
        check_fits(shapes.llm.state_dict(), _tied(lm_state), f"{ckpt_path} [model.llm_backbone]",
                   f"the language model of {cfg.name!r} (d_model {cfg.lm.d_model}, {cfg.lm.n_layer} layers)")
        model = build_random(cfg)
        load_strict(model.projector, parts["projector"], f"{ckpt_path} [model.projector]")
        load_lm_into(model.llm, lm_state, f"{ckpt_path} [model.llm_backbone]")
        for idx, (path, state) in _match_vision_files(model, list(vision_weights or [])).items():
            load_vit_weights(model.vision.encoders[idx], path, state)
        return model.eval(), tok
    lm_cfg = mamba_config_from_json(read_json(folder / "config.json"), str(folder / "config.json"))
    check_memory(preset(preset_name) if preset_name else ModelConfig(name=folder.name, lm=lm_cfg),
                 f"checkpoint {folder}")
    lm_cfg, state, wfile = load_mamba_folder(folder)
    if preset_name:
        cfg = preset(preset_name)
        if cfg.has_vision and vision_weights:
            raise CheckpointError("a Mamba folder holds no projector: export a Cobra checkpoint for a vision model")
    else:
        cfg = ModelConfig(name=folder.name, lm=lm_cfg, prompt_template="{prompt}")
    cfg = replace(cfg, eos_token_id=_eos_id(tok))
    source = f"{wfile} (config {folder / 'config.json'})"
    check_fits(_shapes_only(cfg).llm.state_dict(), _tied(state), source,
               f"a Mamba of d_model {cfg.lm.d_model}, {cfg.lm.n_layer} layers")
    model = build_random(cfg)
    load_lm_into(model.llm, state, source)
    return model.eval(), tok


def _shapes_only(cfg: ModelConfig) -> CobraModel:
    """The model on PyTorch's meta device: every tensor's shape, no memory (a 3B config costs nothing), so a
    checkpoint is checked against the config before the real model is allocated."""
    with torch.device("meta"):
        return CobraModel(cfg)


def _tied(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """An LM state dict with the tied head present, as MambaLM's state dict lists it."""
    emb = state.get("backbone.embedding.weight")
    return state if emb is None else {**state, "lm_head.weight": emb}


__all__ = ["CheckpointError", "build_from_checkpoint", "cobra_config", "detect_format",
           "load_mamba_folder", "load_vit_weights", "normalize_lm_keys"]
