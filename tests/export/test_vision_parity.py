"""Our ViT encoders against independent implementations: transformers' DINOv2-with-registers and SigLIP vision
models (timm itself cannot be installed here). Their weights are renamed to timm's layout, loaded through our
strict timm loader, and Cobra's features (second-to-last block, prefix tokens dropped) are compared."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from export.config import IMAGENET_MEAN, IMAGENET_STD, SIGLIP_MEAN, SIGLIP_STD, VisionEncoderConfig  # noqa: E402
from export.loaders import load_vit_weights  # noqa: E402
from export.vision import ViTEncoder  # noqa: E402
from tests.conftest import report  # noqa: E402

TOL = 1e-4
DEPTH, WIDTH, HEADS, SIZE, PATCH = 3, 32, 4, 56, 14


def _qkv(sd, prefix, q, k, v):
    return {
        "weight": torch.cat([sd[f"{prefix}.{q}.weight"], sd[f"{prefix}.{k}.weight"], sd[f"{prefix}.{v}.weight"]]),
        "bias": torch.cat([sd[f"{prefix}.{q}.bias"], sd[f"{prefix}.{k}.bias"], sd[f"{prefix}.{v}.bias"]]),
    }


def _dinov2_to_timm(sd):
    """HF Dinov2WithRegisters -> timm vit_*_reg4_dinov2 (pos_embed over patches; the class token's position
    embedding is folded into cls_token, which is exact: the class token gets it once either way)."""
    out = {"cls_token": sd["embeddings.cls_token"] + sd["embeddings.position_embeddings"][:, :1],
           "reg_token": sd["embeddings.register_tokens"],
           "pos_embed": sd["embeddings.position_embeddings"][:, 1:],
           "patch_embed.proj.weight": sd["embeddings.patch_embeddings.projection.weight"],
           "patch_embed.proj.bias": sd["embeddings.patch_embeddings.projection.bias"],
           "norm.weight": sd["layernorm.weight"], "norm.bias": sd["layernorm.bias"]}
    for i in range(DEPTH):
        h, t = f"encoder.layer.{i}", f"blocks.{i}"
        qkv = _qkv(sd, f"{h}.attention", "q_proj", "k_proj", "v_proj")
        out.update({f"{t}.attn.qkv.weight": qkv["weight"], f"{t}.attn.qkv.bias": qkv["bias"],
                    f"{t}.attn.proj.weight": sd[f"{h}.attention.o_proj.weight"],
                    f"{t}.attn.proj.bias": sd[f"{h}.attention.o_proj.bias"],
                    f"{t}.ls1.gamma": sd[f"{h}.layer_scale1.lambda1"], f"{t}.ls2.gamma": sd[f"{h}.layer_scale2.lambda1"]})
        for n in ("norm1", "norm2", "mlp.fc1", "mlp.fc2"):
            out[f"{t}.{n}.weight"], out[f"{t}.{n}.bias"] = sd[f"{h}.{n}.weight"], sd[f"{h}.{n}.bias"]
    return out


def _siglip_to_timm(sd):
    out = {"pos_embed": sd["embeddings.position_embedding.weight"][None],
           "patch_embed.proj.weight": sd["embeddings.patch_embedding.weight"],
           "patch_embed.proj.bias": sd["embeddings.patch_embedding.bias"]}
    for i in range(DEPTH):
        h, t = f"encoder.layers.{i}", f"blocks.{i}"
        qkv = _qkv(sd, f"{h}.self_attn", "q_proj", "k_proj", "v_proj")
        out.update({f"{t}.attn.qkv.weight": qkv["weight"], f"{t}.attn.qkv.bias": qkv["bias"],
                    f"{t}.attn.proj.weight": sd[f"{h}.self_attn.out_proj.weight"],
                    f"{t}.attn.proj.bias": sd[f"{h}.self_attn.out_proj.bias"]})
        for ours, theirs in (("norm1", "layer_norm1"), ("norm2", "layer_norm2"), ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")):
            out[f"{t}.{ours}.weight"], out[f"{t}.{ours}.bias"] = sd[f"{h}.{theirs}.weight"], sd[f"{h}.{theirs}.bias"]
    return out


def _randomise(model, seed):
    """HF initialises norms to identity and layer scales to 1: perturb every parameter so all are exercised."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.eval()


@pytest.mark.parametrize("kind", ["dinov2", "siglip"])
def test_vit_matches_transformers(kind, tmp_path):
    from safetensors.torch import save_file

    if kind == "dinov2":
        hf = _randomise(transformers.Dinov2WithRegistersModel(transformers.Dinov2WithRegistersConfig(
            hidden_size=WIDTH, num_hidden_layers=DEPTH, num_attention_heads=HEADS, intermediate_size=4 * WIDTH,
            image_size=SIZE, patch_size=PATCH, num_register_tokens=4)), 0)
        cfg = VisionEncoderConfig(name="dinov2", image_size=SIZE, patch_size=PATCH, width=WIDTH, depth=DEPTH,
                                  heads=HEADS, mean=IMAGENET_MEAN, std=IMAGENET_STD, class_token=True, reg_tokens=4,
                                  no_embed_class=True, layer_scale=True, act="gelu")
        timm_sd, prefix = _dinov2_to_timm(hf.state_dict()), 5
    else:
        hf = _randomise(transformers.SiglipVisionModel(transformers.SiglipVisionConfig(
            hidden_size=WIDTH, num_hidden_layers=DEPTH, num_attention_heads=HEADS, intermediate_size=100,
            image_size=SIZE, patch_size=PATCH)), 1)
        cfg = VisionEncoderConfig(name="siglip", image_size=SIZE, patch_size=PATCH, width=WIDTH, depth=DEPTH,
                                  heads=HEADS, mlp_dim=100, mean=SIGLIP_MEAN, std=SIGLIP_STD, class_token=False,
                                  act="gelu_tanh")
        timm_sd, prefix = _siglip_to_timm(hf.state_dict()), 0
    path = tmp_path / f"{kind}.safetensors"
    save_file({k: v.contiguous() for k, v in timm_sd.items()}, str(path))
    ours = ViTEncoder(cfg)
    load_vit_weights(ours, path)  # the last block and the final norm are in the file and ignored on purpose

    rgb01 = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    mean, std = torch.tensor(cfg.mean).view(1, 3, 1, 1), torch.tensor(cfg.std).view(1, 3, 1, 1)
    with torch.no_grad():
        states = hf(pixel_values=(rgb01 - mean) / std, output_hidden_states=True).hidden_states
        want = states[DEPTH - 1][:, prefix:]  # output of block DEPTH - 2 (states[0] is the embeddings)
        got = ours(rgb01)
    err = float((got - want).abs().max())
    report(f"{kind}: ours vs transformers, second-to-last block", err, TOL)
    assert got.shape == want.shape == (2, (SIZE // PATCH) ** 2, WIDTH)
    assert err < TOL
