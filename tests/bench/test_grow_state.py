"""bench/grow_state.py: the grown model computes what the old one did (residual stream, the state's old columns,
a deeper LM's old layers' states), its new parts hold something and can learn while contributing nothing, and
shrinking is refused."""

import pytest

torch = pytest.importorskip("torch")


def test_grown_state_keeps_the_outputs(tmp_path):
    from bench.grow_state import grow, main
    from export.weights import EMBEDDED, load_trained

    model = load_trained(EMBEDDED)[0]
    big = grow(model, 32)
    assert big.cfg.lm.d_state == 32 and big.cfg.lm.d_inner == model.cfg.lm.d_inner
    pixels = torch.randint(0, 256, (2, model.cfg.image_size, model.cfg.image_size, 3), dtype=torch.uint8)
    with torch.no_grad():
        a, b = model.visual_embeds(pixels), big.visual_embeds(pixels)
        ra, _, sa = model.llm.residual(a, *model.llm.empty_state(2))
        rb, _, sb = big.llm.residual(b, *big.llm.empty_state(2))
    n = model.cfg.lm.d_state
    assert torch.allclose(ra, rb, atol=1e-6) and torch.allclose(sa, sb[..., :n], atol=1e-6)
    assert sb[..., n:].abs().max() > 0
    with pytest.raises(ValueError, match="growing only"):
        grow(model, 8)
    assert main([str(EMBEDDED), str(tmp_path / "g.safetensors"), "--d-state", "24"]) == 0
    grown, _, record = load_trained(tmp_path / "g.safetensors")
    assert grown.cfg.lm.d_state == 24 and record["grown"]["d_state"] == [n, 24]


def test_grown_layers_keep_the_outputs_and_can_learn(tmp_path):
    from bench.grow_state import grow_layers, main
    from export.weights import EMBEDDED, load_trained

    model = load_trained(EMBEDDED)[0]
    n = model.cfg.lm.n_layer
    big, placed = grow_layers(model, 2 * n)
    assert big.cfg.lm.n_layer == 2 * n and placed == [2 * i for i in range(n)]
    pixels = torch.randint(0, 256, (2, model.cfg.image_size, model.cfg.image_size, 3), dtype=torch.uint8)
    with torch.no_grad():
        a, b = model.visual_embeds(pixels), big.visual_embeds(pixels)
        ra, _, sa = model.llm.residual(a, *model.llm.empty_state(2))
        rb, _, sb = big.llm.residual(b, *big.llm.empty_state(2))
    assert torch.allclose(ra, rb, atol=1e-6) and torch.allclose(sa, sb[:, placed], atol=1e-6)
    fresh = [j for j in range(2 * n) if j not in placed]
    assert sb[:, fresh].abs().max() > 0  # the new blocks' states are written, their outputs not yet added
    rb, _, _ = big.llm.residual(b, *big.llm.empty_state(2))
    rb.square().mean().backward()
    assert all(big.llm.backbone.layers[j].mixer.out_proj.weight.grad.abs().max() > 0 for j in fresh)
    with pytest.raises(ValueError, match="growing only"):
        grow_layers(model, n - 1)
    assert main([str(EMBEDDED), str(tmp_path / "g.safetensors"), "--layers", str(n + 2)]) == 0
    grown, _, record = load_trained(tmp_path / "g.safetensors")
    assert grown.cfg.lm.n_layer == n + 2 and record["grown"]["n_layer"] == [n, n + 2]
