"""Our ConvNeXt (timm layout; MG-LLaVA's and Cambrian-1's high-resolution encoder) against transformers'
ConvNextModel, an independent implementation: its weights renamed to timm's names, loaded through our strict
loader, last-stage maps compared."""

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from safetensors.torch import save_file  # noqa: E402

from export.config import convnext  # noqa: E402
from export.convnext import ConvNeXtEncoder  # noqa: E402
from export.loaders import load_vit_weights  # noqa: E402
from tests.conftest import report  # noqa: E402

TOL = 1e-4


def _hf_to_timm(sd: dict, stages: int) -> dict:
    out = {"stem.0.weight": sd["embeddings.patch_embeddings.weight"], "stem.0.bias": sd["embeddings.patch_embeddings.bias"],
           "stem.1.weight": sd["embeddings.layernorm.weight"], "stem.1.bias": sd["embeddings.layernorm.bias"],
           "head.norm.weight": sd["layernorm.weight"], "head.norm.bias": sd["layernorm.bias"]}  # ignored by the loader
    names = {"dwconv": "conv_dw", "layernorm": "norm", "pwconv1": "mlp.fc1", "pwconv2": "mlp.fc2"}
    for key, value in sd.items():
        parts = key.split(".")
        if parts[:2] != ["encoder", "stages"]:
            continue
        i, rest = parts[2], parts[3:]
        if rest[0] == "downsampling_layer":
            out[f"stages.{i}.downsample.{rest[1]}.{rest[2]}"] = value
        elif rest[2] == "layer_scale_parameter":
            out[f"stages.{i}.blocks.{rest[1]}.gamma"] = value
        else:
            out[f"stages.{i}.blocks.{rest[1]}.{names[rest[2]]}.{rest[3]}"] = value
    return out


def test_convnext_matches_transformers(tmp_path):
    dims, depths = (16, 32, 64), (2, 1, 2)
    hf_cfg = transformers.ConvNextConfig(hidden_sizes=list(dims), depths=list(depths), num_stages=3,
                                         layer_norm_eps=1e-6, layer_scale_init_value=0.3)
    torch.manual_seed(0)
    hf = transformers.ConvNextModel(hf_cfg).eval()
    with torch.no_grad():  # move norms and layer scales away from their init so every weight matters
        for name, p in hf.named_parameters():
            if "layernorm" in name or "layer_scale" in name or name.endswith("bias"):
                p.add_(0.1 * torch.randn_like(p))
    path = tmp_path / "convnext.safetensors"
    save_file({k: v.contiguous() for k, v in _hf_to_timm(hf.state_dict(), 3).items()}, str(path))
    cfg = convnext("convnext", 96, dims, depths)
    ours = ConvNeXtEncoder(cfg).eval()
    load_vit_weights(ours, path)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        want = hf(pixel_values=x).last_hidden_state  # [b, c, g, g] before the pooler's norm
        got = ours.feature_map(x * ours.std + ours.mean)  # ours normalises inside; transformers takes it done
    err = float((got - want).abs().max())
    report("convnext vs transformers", err, TOL)
    assert got.shape == (2, 64, 6, 6) and err <= TOL
    assert ours(x).shape == (2, 36, 64)  # as tokens, row-major
