"""Cambrian-1's SVA and mPLUG-Owl2's abstractor: resampling matrices equal torch's ops, each SVA query sees only
its own window of every encoder, the abstractor's token count does not depend on the patch count."""

import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from dataclasses import replace  # noqa: E402

from export.config import preset  # noqa: E402
from export.model import build_random  # noqa: E402
from export.resample import bilinear_matrix, grid_resample_matrix  # noqa: E402
from export.vision import resample  # noqa: E402


@pytest.mark.parametrize("g_in, g_out", [(8, 10), (16, 15), (37, 48), (27, 24), (5, 5), (3, 7)])
def test_grid_resample_matrix_equals_torch(g_in, g_out):
    x = torch.randn(2, 6, g_in, g_in)
    tokens = x.flatten(2).transpose(1, 2)  # [b, g_in^2, c]
    got = (grid_resample_matrix(g_in, g_out) @ tokens).transpose(1, 2).reshape(2, 6, g_out, g_out)
    if g_out < g_in:
        want = F.adaptive_avg_pool2d(x, g_out)
    else:
        want = F.interpolate(x, size=(g_out, g_out), mode="bilinear", align_corners=False)
    assert (got - want).abs().max() < 5e-5  # float32 sums of up to 37^2 terms


def test_bilinear_matrix_rows_sum_to_one():
    m = bilinear_matrix(7, 19)
    assert torch.allclose(m.sum(1), torch.ones(19))


def test_resample_inside_vision_graph():
    x = torch.rand(1, 3, 224, 224)
    assert torch.allclose(resample(x, 112), F.avg_pool2d(x, 2))
    assert resample(x, 224) is x
    assert resample(x, 100).shape == (1, 3, 100, 100)


def _sva_features(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(1, v.num_patches, v.width, generator=g) for v in model.cfg.vision]


def test_sva_query_sees_only_its_window():
    """tiny-sva: 5x5 queries; DINOv2 8x8 -> grown to 10x10, windows 2x2; SigLIP 16x16 -> pooled to 15x15,
    windows 3x3. Changing SigLIP patches that feed only cell (4, 4) changes token 24 and no other."""
    model = build_random(preset("tiny-sva"), seed=1)
    feats = _sva_features(model)
    with torch.no_grad():
        base = model.projector(*feats)
        changed = [f.clone() for f in feats]
        grid = changed[1].reshape(1, 16, 16, -1)
        grid[:, 15, 15] += 3 * torch.randn(grid.shape[-1])  # (features are layer-normed: not a constant) the bottom-right patch pools only into the bottom-right 15x15 cell -> query (4, 4)
        out = model.projector(*changed)
    diff = (out - base).abs().amax(dim=-1)[0]  # [25]
    assert diff[24] > 1e-3
    assert diff[:24].max() < 1e-6


def test_sva_uses_every_encoder():
    model = build_random(preset("tiny-sva"), seed=1)
    feats = _sva_features(model)
    with torch.no_grad():
        base = model.projector(*feats)
        for e in range(len(feats)):
            changed = list(feats)
            changed[e] = feats[e] + torch.randn(feats[e].shape)
            assert (model.projector(*changed) - base).abs().max() > 1e-3, model.cfg.vision[e].name


def test_abstractor_token_count_is_fixed():
    cfg = preset("tiny-abstractor")
    model = build_random(cfg, seed=2)
    assert cfg.num_visual_tokens == cfg.num_queries == 16
    with torch.no_grad():
        out = model.projector(torch.randn(3, 64, cfg.d_vision))
    assert out.shape == (3, 16, cfg.lm.d_model)
    # every query attends to every patch: changing one patch changes every token
    bigger = build_random(replace(cfg, num_queries=4), seed=2)
    x = torch.randn(1, 64, cfg.d_vision)
    with torch.no_grad():
        a = bigger.projector(x)
        x[:, 37] += 3 * torch.randn(x.shape[-1])
        b = bigger.projector(x)
    assert ((b - a).abs().amax(dim=-1) > 1e-4).all()
