"""bench/grow_state.py: the grown model computes what the old one did (residual stream and state's old columns),
its new state columns hold something (B is not zero) while contributing nothing, and shrinking is refused."""

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
