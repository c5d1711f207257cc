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
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

ZEPHYR_TEMPLATE = "<|user|>\n{prompt}<|endoftext|>\n<|assistant|>\n"


@dataclass
class VisionEncoderConfig:
    """A ViT in timm's layout (``patch_embed``, ``pos_embed``, ``blocks.N``), as Cobra's encoders are, or
    (``kind="convnext"``) a ConvNeXt in timm's layout (``stem``, ``stages.N``), as MG-LLaVA's high-resolution
    branch and one of Cambrian-1's encoders are.

    ViT: ``feature_block`` is the index of the block whose output is taken (Cobra/Prismatic: the second to
    last, ``depth - 2``), without the final norm, with prefix (class/register) tokens dropped.
    ConvNeXt: ``convnext_dims``/``convnext_depths`` per stage; the last stage's map is the feature map, so
    ``patch_size`` must be the total stride ``4 * 2**(stages - 1)`` and ``width`` the last stage's width
    (``depth``, ``heads`` are unused: give 1).
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
    act: str = "gelu"  # "gelu" | "gelu_tanh" (SigLIP) | "quick_gelu" (OpenAI CLIP)
    pre_norm: bool = False  # timm's norm_pre before the blocks (OpenAI CLIP's ln_pre)
    norm_eps: float = 1e-6
    qkv_bias: bool = True
    feature_block: int = -2  # negative counts from the end: -2 = second-to-last block
    mlp_dim: int = 0  # hidden width of the MLP; 0 -> width * mlp_ratio (SigLIP-SO400M: 4304)
    kind: str = "vit"  # "vit" | "convnext"
    convnext_dims: tuple[int, ...] = ()
    convnext_depths: tuple[int, ...] = ()

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
        if self.act not in ("gelu", "gelu_tanh", "quick_gelu"):
            raise ValueError(f"vision encoder {self.name!r}: unknown act {self.act!r}")
        if self.kind not in ("vit", "convnext"):
            raise ValueError(f"vision encoder {self.name!r}: unknown kind {self.kind!r}; use 'vit' or 'convnext'")
        self.convnext_dims = tuple(int(d) for d in self.convnext_dims)
        self.convnext_depths = tuple(int(d) for d in self.convnext_depths)
        if self.kind == "convnext":
            dims, depths = self.convnext_dims, self.convnext_depths
            stride = 4 * 2 ** (len(dims) - 1)
            if not dims or len(dims) != len(depths):
                raise ValueError(f"vision encoder {self.name!r}: convnext_dims {dims} and depths {depths} must pair up")
            if self.patch_size != stride or self.width != dims[-1]:
                raise ValueError(
                    f"vision encoder {self.name!r}: a ConvNeXt with {len(dims)} stages has total stride {stride} "
                    f"and width {dims[-1]}; got patch_size {self.patch_size}, width {self.width}"
                )
        self.grid = self.image_size // self.patch_size  # timm floors: 384 px / 14 -> 27 (last 6 px unused)
        self.num_patches = self.grid * self.grid
        self.num_prefix_tokens = int(self.class_token) + self.reg_tokens
        self.mlp_hidden = self.mlp_dim or int(self.width * self.mlp_ratio)
        if self.kind == "vit" and not -self.depth <= self.feature_block < self.depth:
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
    """A whole Cobra-style model. ``vision`` is empty for a language-model-only artifact.

    Projector kinds (``PROJECTOR_KINDS``) fall in two families:
    - channel-fused (Cobra's MLPs and LDP, the abstractor): the encoders share image size and patch grid, and
      their features are concatenated on channels into one ``patch_features`` tensor;
    - multi-scale (``sva``, ``mg-conv-gate``): encoders may differ in resolution; the vision graph takes the
      largest resolution, each encoder resamples to its own inside the graph, and each emits its own features
      (``features_<name>``).
    ``projector_grid``: LDP's pooled grid, or SVA's grid of queries; ``num_queries``: the abstractor's queries;
    ``projector_dim``/``projector_layers``/``projector_heads``: width, depth and heads of the SVA/abstractor
    attention (dim 0 -> d_model); ``roi_size``: RoIAlign bins per side for MG-LLaVA's object tokens.
    """

    name: str
    lm: MambaConfig
    vision: tuple[VisionEncoderConfig, ...] = ()
    projector: str = "fused-gelu-mlp"  # one of PROJECTOR_KINDS
    projector_grid: int = 14  # LDP kinds: patch grid pooled to projector_grid^2 tokens (Cobra: 27x27 -> 14x14)
    projector_dim: int = 0
    projector_layers: int = 1
    projector_heads: int = 4
    num_queries: int = 64
    roi_size: int = 2
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
        if self.projector_dim == 0:
            self.projector_dim = self.lm.d_model
        if self.projector_dim % self.projector_heads:
            raise ValueError(f"projector_dim {self.projector_dim} not divisible by projector_heads {self.projector_heads}")
        if not self.vision:
            self.image_size = self.d_vision = self.num_visual_tokens = 0
            return
        self.image_size = max(v.image_size for v in self.vision)
        self.d_vision = sum(v.width for v in self.vision)
        names = [v.name for v in self.vision]
        if len(set(names)) != len(names) or not all(n.isidentifier() for n in names):
            raise ValueError(f"vision encoder names must be distinct identifiers, got {names}")
        if self.multi_scale:
            if self.projector == "mg-conv-gate" and len(self.vision) != 2:
                raise ValueError(f"mg-conv-gate takes two encoders (low-res ViT, high-res), got {len(self.vision)}")
        else:
            sizes = {v.image_size for v in self.vision}
            grids = {v.grid for v in self.vision}
            if len(sizes) != 1 or len(grids) != 1:
                raise ValueError(
                    f"projector {self.projector!r} concatenates encoder features on channels, so the encoders must "
                    f"share image size and patch grid; got sizes {sorted(sizes)} and grids {sorted(grids)} "
                    f"(multi-resolution encoders need a multi-scale projector: {MULTI_SCALE_KINDS})"
                )
            if any(v.kind != "vit" for v in self.vision):
                raise ValueError(f"projector {self.projector!r} takes ViT encoders only")
        self.num_visual_tokens = {
            "sva": self.projector_grid ** 2,
            "abstractor": self.num_queries,
            "mg-conv-gate": self.vision[0].num_patches,
        }.get(self.projector, self.projector_grid ** 2 if self.projector in LDP_KINDS else self.vision[0].num_patches)

    @property
    def multi_scale(self) -> bool:
        """True when each encoder emits its own feature tensor (``features_<name>``) instead of one fused one."""
        return self.projector in MULTI_SCALE_KINDS

    @property
    def object_tokens(self) -> bool:
        """True when the projector takes detector boxes and appends one token per valid box."""
        return self.projector == "mg-conv-gate"

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
MULTI_SCALE_KINDS = ("sva", "mg-conv-gate")  # Cambrian-1's aggregator, MG-LLaVA's Conv-Gate + object tokens
PROJECTOR_KINDS = {"fused-gelu-mlp", "gelu-mlp", "linear", "abstractor", *LDP_KINDS, *MULTI_SCALE_KINDS}


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


def tiny_variant(name: str, projector: str, projector_grid: int = 14, **fields) -> ModelConfig:
    """The tiny model with another projector (same LM; same encoders unless ``vision`` is given)."""
    return replace(tiny(), name=name, projector=projector, projector_grid=projector_grid, **fields)


def tiny_sva() -> ModelConfig:
    """Cambrian-1's SVA at toy size: the DINOv2-like encoder at 112 px (8x8 patches) and the SigLIP-like one
    at 224 px (16x16), a 5x5 grid of queries (25 tokens; windows 2x2 on 8x8 bilinearly grown to 10x10, 3x3
    on 16x16 area-pooled to 15x15), 2 aggregator layers."""
    dino, siglip = tiny().vision
    return tiny_variant("tiny-sva", "sva", projector_grid=5, projector_layers=2,
                        vision=(dino, replace(siglip, image_size=224)))


def tiny_mg() -> ModelConfig:
    """MG-LLaVA's flow at toy size: a CLIP-like ViT at 112 px (8x8) + a 3-stage ConvNeXt at 224 px (14x14 map),
    Conv-Gate fusion to 64 tokens, plus one token per detector box (RoIAlign 2x2 on the ConvNeXt map)."""
    clip = VisionEncoderConfig(name="clip", image_size=112, patch_size=14, width=64, depth=3, heads=4,
                               mean=CLIP_MEAN, std=CLIP_STD, act="quick_gelu", pre_norm=True)
    return tiny_variant("tiny-mg", "mg-conv-gate", vision=(clip, convnext("convnext", 224, (16, 32, 64), (1, 1, 1))),
                        roi_size=2)


def tiny_ldp_96() -> ModelConfig:
    """The trained embedded default's shape: tiny's encoders, the fused LDP projector pooling the 8x8 patches to
    4x4 = 16 tokens, and a wider LM (d_model 96, d_inner 192). Why (docs/training.md): at tiny's d_model 64 and
    64 visual tokens, binding a named shape to its place stayed at chance for 1200 steps; 16 tokens quarter the
    LM's work per image and shorten what the state must carry, and the wider state holds more objects."""
    base = tiny_variant("tiny-ldp-96", "fused-ldpnet", projector_grid=4)
    return replace(base, lm=replace(base.lm, d_model=96, dt_rank="auto"))


def tiny_abstractor() -> ModelConfig:
    """mPLUG-Owl2's visual abstractor at toy size: 16 queries, 2 cross-attention layers over the 64 patches."""
    return tiny_variant("tiny-abstractor", "abstractor", num_queries=16, projector_layers=2)


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


def clip_vit_l14(image_size: int = 336) -> VisionEncoderConfig:
    """OpenAI CLIP ViT-L/14 (timm ``vit_large_patch14_clip_336.openai``), second-to-last block as LLaVA reads it."""
    return VisionEncoderConfig(name="clip", image_size=image_size, patch_size=14, width=1024, depth=24, heads=16,
                               mean=CLIP_MEAN, std=CLIP_STD, act="quick_gelu", pre_norm=True)


def convnext(name: str, image_size: int, dims: tuple[int, ...], depths: tuple[int, ...]) -> VisionEncoderConfig:
    return VisionEncoderConfig(name=name, image_size=image_size, patch_size=4 * 2 ** (len(dims) - 1), width=dims[-1],
                               depth=1, heads=1, mean=CLIP_MEAN, std=CLIP_STD, kind="convnext",
                               convnext_dims=dims, convnext_depths=depths)


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


def cambrian_sva_3b() -> ModelConfig:
    """Cambrian-1's vision side on Cobra's backbone: SigLIP-SO400M/14@384 (27x27), CLIP ConvNeXt-XXL@1024
    (32x32), DINOv2 ViT-L/14@518 (37x37), CLIP ViT-L/14@336 (24x24) aggregated by an SVA of 24x24 = 576
    queries of width 1024, 3 layers (our reading of the paper's main setting)."""
    dino = dinov2_vit_l14_reg4(518)
    return ModelConfig(
        name="cambrian-sva-3b", lm=mamba_lm("mamba-2.8b"), projector="sva", projector_grid=24, projector_dim=1024,
        projector_layers=3, projector_heads=16,
        vision=(siglip_so400m_p14(), convnext("convnext", 1024, (384, 768, 1536, 3072), (3, 4, 30, 3)), dino,
                clip_vit_l14()),
    )


def mg_llava_3b() -> ModelConfig:
    """MG-LLaVA's flow on Cobra's backbone: CLIP ViT-L/14@336 (24x24) + ConvNeXt-L@768 (24x24 map of 1536),
    Conv-Gate fusion -> 576 tokens, plus one token per detector box."""
    return ModelConfig(name="mg-llava-3b", lm=mamba_lm("mamba-2.8b"), projector="mg-conv-gate", roi_size=2,
                       vision=(clip_vit_l14(), convnext("convnext", 768, (192, 384, 768, 1536), (3, 3, 27, 3))))


def owl2_abstractor_3b() -> ModelConfig:
    """mPLUG-Owl2's vision side on Cobra's backbone: ViT-L/14@448 (32x32 = 1024 patches) -> a 6-layer visual
    abstractor of width 1024 with 64 queries."""
    return ModelConfig(name="owl2-abstractor-3b", lm=mamba_lm("mamba-2.8b"), projector="abstractor", num_queries=64,
                       projector_dim=1024, projector_layers=6, projector_heads=16, vision=(clip_vit_l14(448),))


PRESETS = {
    "tiny": tiny,
    "tiny-mlp": lambda: tiny_variant("tiny-mlp", "gelu-mlp"),
    "tiny-ldp": lambda: tiny_variant("tiny-ldp", "fused-ldpnet", projector_grid=4),  # 8x8 patches -> 4x4 tokens
    "tiny-ldp-96": tiny_ldp_96,
    "tiny-sva": tiny_sva,
    "tiny-mg": tiny_mg,
    "tiny-abstractor": tiny_abstractor,
    "cobra-3b": cobra_3b,
    "cobra-siglip-3b": cobra_siglip_3b,
    "cobra-ldp-3b": cobra_ldp_3b,
    "cambrian-sva-3b": cambrian_sva_3b,
    "mg-llava-3b": mg_llava_3b,
    "owl2-abstractor-3b": owl2_abstractor_3b,
    **{name: _mamba_preset(name) for name in MAMBA_DIMS},
}


def preset(name: str) -> ModelConfig:
    """Build a named preset; an unknown name lists the known ones."""
    try:
        return PRESETS[name]()
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}") from None
