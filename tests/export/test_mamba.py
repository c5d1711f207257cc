"""The PyTorch reference against itself: scan forms agree; chunks and steps continue the same state."""

import pytest

torch = pytest.importorskip("torch")

from export.config import MambaConfig  # noqa: E402
from export.mamba import MambaLM, init_mamba_weights_  # noqa: E402
from export.scan import scan_hop, scan_ref  # noqa: E402
from tests.conftest import report  # noqa: E402

TOL = 2e-5


@pytest.fixture(scope="module")
def lm():
    cfg = MambaConfig(d_model=32, n_layer=3, vocab_size=100, d_state=8, d_conv=4)
    return init_mamba_weights_(MambaLM(cfg), seed=3).eval()


def _max_err(a, b):
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


@pytest.mark.parametrize("l", [1, 2, 7, 33])
def test_scan_hop_equals_loop(l):
    g = torch.Generator().manual_seed(l)
    b, d, n = 2, 6, 4
    dA = torch.rand(b, l, d, n, generator=g)
    dBx = torch.randn(b, l, d, n, generator=g)
    C = torch.randn(b, l, n, generator=g)
    h0 = torch.randn(b, d, n, generator=g)
    err = _max_err(scan_hop(dA, dBx, C, h0), scan_ref(dA, dBx, C, h0))
    report(f"scan_hop vs scan_ref l={l}", err, 1e-6)
    assert err < 1e-6


def test_config_derived_fields():
    cfg = MambaConfig(d_model=2560, n_layer=64, vocab_size=50277)
    assert (cfg.d_inner, cfg.dt_rank, cfg.vocab_padded) == (5120, 160, 50280)
    with pytest.raises(ValueError, match="d_conv"):
        MambaConfig(d_model=8, n_layer=1, vocab_size=10, d_conv=1)


@pytest.mark.parametrize("split", [1, 3, 9])
def test_prefill_chunks_and_steps_continue_the_state(lm, split):
    """whole == prefix + rest (prefill) == prefix + token-by-token steps: logits and both states."""
    ids = torch.randint(0, 100, (2, 12), generator=torch.Generator().manual_seed(split))
    emb = lm.embed(ids)
    conv0, ssm0 = lm.empty_state(2)
    with torch.no_grad():
        whole = lm.forward_embeds(emb, conv0, ssm0)
        _, c, s = lm.forward_embeds(emb[:, :split], conv0, ssm0)
        rest = lm.forward_embeds(emb[:, split:], c, s)
        err = _max_err((whole[0][:, split:], whole[1], whole[2]), rest)
        report(f"prefix {split} + rest vs whole", err, TOL)
        assert err < TOL
        for t in range(split, 12):
            logits, c, s = lm.step(ids[:, t], c, s)
        err = _max_err((whole[0][:, -1], whole[1], whole[2]), (logits, c, s))
        report(f"prefix {split} + steps vs whole", err, TOL)
        assert err < TOL


def test_empty_state_layout(lm):
    conv, ssm = lm.empty_state(3)
    c = lm.cfg
    assert conv.shape == (3, c.n_layer, c.d_inner, c.d_conv - 1)
    assert ssm.shape == (3, c.n_layer, c.d_inner, c.d_state) and ssm.dtype == torch.float32
