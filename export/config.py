"""Model configuration: one dataclass per concept, derived fields in ``__post_init__``, named presets.

A Cobra-style model is ``vision encoders -> projector -> Mamba LM``. The config is also written into
``manifest.json`` (``ModelConfig.to_dict``) so the runtime knows the shapes without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SIGLIP_MEAN = (0.5, 0.5, 0.5)
SIGLIP_STD = (0.5, 0.5, 0.5)

ZEPHYR_TEMPLATE = "<|user|>\n{prompt}<|endoftext|>\n<|assistant|>\n"


@dataclass
class VisionEncoderConfig:
    """A ViT in timm's layout (``patch_embed``, ``pos_embed``, ``blocks.N``), as Cobra's encoders are.

    ``feature_block`` is the index of the block whose output is taken (Cobra/Prismatic: the second to
    last, ``depth - 2``), without the final norm, with prefix (class/register) tokens dropped.
    """

    name: str
    image_size: int
    patch_size: int
    width: int
    depth: int
    heads: int
    mlp_ratio: float = 4.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    class_token: bool = True
    reg_tokens: int = 0
    no_embed_class: bool = False  # True: pos_embed covers patches only (DINOv2 with registers)
    layer_scale: bool = False  # DINOv2's ls1/ls2
    act: str = "gelu"  # "gelu" | "gelu_tanh" (SigLIP)
    norm_eps: float = 1e-6
    qkv_bias: bool = True
    feature_block: int = -2  # negative counts from the end: -2 = second-to-last block
    mlp_dim: int = 0  # hidden width of the MLP; 0 -> width * mlp_ratio (SigLIP-SO400M: 4304)

    grid: int = field(init=False)
    num_patches: int = field(init=False)
    num_prefix_tokens: int = field(init=False)
    mlp_hidden: int = field(init=False)

    def __post_init__(self) -> None:
        self.mean = tuple(float(v) for v in self.mean)
        self.std = tuple(float(v) for v in self.std)
        if self.image_size < self.patch_size:
            raise ValueError(f"vision encoder {self.name!r}: image_size {self.image_size} < patch_size {self.patch_size}")
        if self.width % self.heads:
            raise ValueError(f"vision encoder {self.name!r}: width {self.width} not divisible by heads {self.heads}")
        if self.act not in ("gelu", "gelu_tanh"):
            raise ValueError(f"vision encoder {self.name!r}: unknown act {self.act!r}")
        self.grid = self.image_size // self.patch_size  # timm floors: 384 px / 14 -> 27 (last 6 px unused)
        self.num_patches = self.grid * self.grid
        self.num_prefix_tokens = int(self.class_token) + self.reg_tokens
        self.mlp_hidden = self.mlp_dim or int(self.width * self.mlp_ratio)
        if not -self.depth <= self.feature_block < self.depth:
            raise ValueError(f"vision encoder {self.name!r}: feature_block {self.feature_block} outside depth {self.depth}")

    @property
    def blocks_used(self) -> int:
        """How many blocks run: the feature block and those before it (later blocks are never exported)."""
        return self.feature_block % self.depth + 1


@dataclass
class MambaConfig:
    """Mamba-1 language model dimensions (names as in the paper and mamba_ssm).

    ``vocab_size`` is the tokenizer's; the embedding is ``vocab_padded`` rows (a multiple of
    ``pad_vocab_size_multiple``), as mamba_ssm pads it.
    """

    d_model: int
    n_layer: int
    vocab_size: int
    d_state: int = 16
    d_conv: int = 4
    expand: int = 2
    dt_rank: int | str = "auto"
    pad_vocab_size_multiple: int = 8
    norm_eps: float = 1e-5
    conv_bias: bool = True
    bias: bool = False

    d_inner: int = field(init=False)
    vocab_padded: int = field(init=False)

    def __post_init__(self) -> None:
        if self.dt_rank == "auto":
            self.dt_rank = math.ceil(self.d_model / 16)
        self.d_inner = self.expand * self.d_model
        m = self.pad_vocab_size_multiple
        self.vocab_padded = self.vocab_size + (-self.vocab_size) % m
        if self.d_conv < 2:
            raise ValueError(f"d_conv must be >= 2 (the conv state keeps d_conv - 1 columns), got {self.d_conv}")


@dataclass
class ModelConfig:
    """A whole Cobra-style model. ``vision`` is empty for a language-model-only artifact."""

    name: str
    lm: MambaConfig
    vision: tuple[VisionEncoderConfig, ...] = ()
    projector: str = "fused-gelu-mlp"  # one of PROJECTOR_KINDS
    projector_grid: int = 14  # LDP kinds: patch grid pooled to projector_grid^2 tokens (Cobra: 27x27 -> 14x14)
    prompt_template: str = ZEPHYR_TEMPLATE
    eos_token_id: int = 0
    dtype: str = "float32"

    image_size: int = field(init=False)
    d_vision: int = field(init=False)
    num_visual_tokens: int = field(init=False)

    def __post_init__(self) -> None:
        self.vision = tuple(self.vision)
        if self.projector not in PROJECTOR_KINDS:
            raise ValueError(f"unknown projector {self.projector!r}; known: {sorted(PROJECTOR_KINDS)}")
        if "{prompt}" not in self.prompt_template:
            raise ValueError("prompt_template must contain '{prompt}'")
        if self.vision:
            sizes = {v.image_size for v in self.vision}
            grids = {v.grid for v in self.vision}
            if len(sizes) != 1 or len(grids) != 1:
                raise ValueError(
                    f"vision encoders must share image size and patch grid to be concatenated; got sizes "
                    f"{sorted(sizes)} and grids {sorted(grids)}"
                )
            self.image_size = self.vision[0].image_size
            self.d_vision = sum(v.width for v in self.vision)
            ldp = self.projector in LDP_KINDS
            self.num_visual_tokens = self.projector_grid ** 2 if ldp else self.vision[0].num_patches
        else:
            self.image_size = 0
            self.d_vision = 0
            self.num_visual_tokens = 0

    @property
    def has_vision(self) -> bool:
        return bool(self.vision)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["vision"] = [asdict(v) for v in self.vision]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        def strip(kind, data):
            names = {f.name for f in kind.__dataclass_fields__.values() if f.init}
            return {k: v for k, v in data.items() if k in names}

        vision = tuple(VisionEncoderConfig(**strip(VisionEncoderConfig, v)) for v in d.get("vision", ()))
        lm = MambaConfig(**strip(MambaConfig, d["lm"]))
        rest = strip(cls, d)
        rest.update(lm=lm, vision=vision)
        return cls(**rest)


# Cobra's arch_specifier suffixes (Prismatic naming): fused-* projectors see the concatenated features
LDP_KINDS = ("ldpnet", "fused-ldpnet")  # pool the patch grid to projector_grid^2 tokens
PROJECTOR_KINDS = {"fused-gelu-mlp", "gelu-mlp", "linear", *LDP_KINDS}


def tiny() -> ModelConfig:
    """A Cobra-shaped model that exports and answers in seconds on 2 CPU cores.

    Two encoders as in Cobra (a DINOv2-like one with class + 4 register tokens, layer scale and ImageNet
    normalisation; a SigLIP-like one with no prefix tokens, tanh GELU and mean = std = 0.5), 112 px,
    patch 14 -> 8x8 = 64 visual tokens of width 64 + 48; fused GELU MLP; a 4-layer Mamba.
    """
    dino = VisionEncoderConfig(
        name="dinov2", image_size=112, patch_size=14, width=64, depth=3, heads=4,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, class_token=True, reg_tokens=4, no_embed_class=True,
        layer_scale=True, act="gelu",
    )
    siglip = VisionEncoderConfig(
        name="siglip", image_size=112, patch_size=14, width=48, depth=3, heads=4,
        mean=SIGLIP_MEAN, std=SIGLIP_STD, class_token=False, reg_tokens=0, act="gelu_tanh",
    )
    lm = MambaConfig(d_model=64, n_layer=4, vocab_size=508, d_state=16, d_conv=4, expand=2)
    return ModelConfig(name="tiny", lm=lm, vision=(dino, siglip), projector="fused-gelu-mlp")


def tiny_variant(name: str, projector: str, projector_grid: int = 14) -> ModelConfig:
    """The tiny model with another projector (same encoders and LM)."""
    return replace(tiny(), name=name, projector=projector, projector_grid=projector_grid)


def dinov2_vit_l14_reg4(image_size: int = 384) -> VisionEncoderConfig:
    """timm ``vit_large_patch14_reg4_dinov2.lvd142m`` at Cobra's resolution."""
    return VisionEncoderConfig(
        name="dinov2", image_size=image_size, patch_size=14, width=1024, depth=24, heads=16, mean=IMAGENET_MEAN,
        std=IMAGENET_STD, class_token=True, reg_tokens=4, no_embed_class=True, layer_scale=True, act="gelu",
    )


def siglip_so400m_p14(image_size: int = 384) -> VisionEncoderConfig:
    """timm ``vit_so400m_patch14_siglip_384``."""
    return VisionEncoderConfig(
        name="siglip", image_size=image_size, patch_size=14, width=1152, depth=27, heads=16, mlp_dim=4304,
        mean=SIGLIP_MEAN, std=SIGLIP_STD, class_token=False, reg_tokens=0, act="gelu_tanh",
    )


# (d_model, n_layer) of state-spaces/mamba-*; GPT-NeoX tokenizer, 50277 tokens padded to 50280
MAMBA_DIMS = {
    "mamba-130m": (768, 24),
    "mamba-370m": (1024, 48),
    "mamba-790m": (1536, 48),
    "mamba-1.4b": (2048, 48),
    "mamba-2.8b": (2560, 64),
}
NEOX_VOCAB = 50277


def mamba_lm(name: str) -> MambaConfig:
    d_model, n_layer = MAMBA_DIMS[name]
    return MambaConfig(d_model=d_model, n_layer=n_layer, vocab_size=NEOX_VOCAB)


def _mamba_preset(name: str):
    return lambda: ModelConfig(name=name, lm=mamba_lm(name), prompt_template="{prompt}")


def cobra_3b() -> ModelConfig:
    """Cobra (cobra+3b): DINOv2 + SigLIP at 384 px -> 729 tokens of 2176; fused GELU MLP; Mamba-2.8B Zephyr."""
    return ModelConfig(name="cobra-3b", lm=mamba_lm("mamba-2.8b"), vision=(dinov2_vit_l14_reg4(), siglip_so400m_p14()),
                       projector="fused-gelu-mlp")


def cobra_siglip_3b() -> ModelConfig:
    return ModelConfig(name="cobra-siglip-3b", lm=mamba_lm("mamba-2.8b"), vision=(siglip_so400m_p14(),),
                       projector="gelu-mlp")


def cobra_ldp_3b() -> ModelConfig:
    """Cobra with its LDP projector (fused-ldpnet): 729 patches pooled to 14x14 = 196 tokens."""
    return ModelConfig(name="cobra-ldp-3b", lm=mamba_lm("mamba-2.8b"), vision=(dinov2_vit_l14_reg4(), siglip_so400m_p14()),
                       projector="fused-ldpnet", projector_grid=14)


PRESETS = {
    "tiny": tiny,
    "tiny-mlp": lambda: tiny_variant("tiny-mlp", "gelu-mlp"),
    "tiny-ldp": lambda: tiny_variant("tiny-ldp", "fused-ldpnet", projector_grid=4),  # 8x8 patches -> 4x4 tokens
    "cobra-3b": cobra_3b,
    "cobra-siglip-3b": cobra_siglip_3b,
    "cobra-ldp-3b": cobra_ldp_3b,
    **{name: _mamba_preset(name) for name in MAMBA_DIMS},
}


def preset(name: str) -> ModelConfig:
    """Build a named preset; an unknown name lists the known ones."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}") from None
