"""The PyTorch reference against itself: scan forms agree; chunks and steps continue the same state."""

from functools import partial

import pytest

torch = pytest.importorskip("torch")

from export.config import MambaConfig  # noqa: E402
from export.mamba import MambaLM, init_mamba_weights_  # noqa: E402
from export.scan import scan_chunked, scan_hop, scan_ref  # noqa: E402
from tests.conftest import report  # noqa: E402

TOL = 2e-5


@pytest.fixture(scope="module")
def lm():
    cfg = MambaConfig(d_model=32, n_layer=3, vocab_size=100, d_state=8, d_conv=4)
    return init_mamba_weights_(MambaLM(cfg), seed=3).eval()


def _max_err(a, b):
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


def _scan_inputs(b, l, d, n, seed):
    """x, dt, A, B, C, h0 as a Mamba layer makes them: dt > 0 (softplus), A < 0."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, l, d, generator=g)
    dt = torch.nn.functional.softplus(torch.randn(b, l, d, generator=g) - 1)
    A = -torch.exp(torch.rand(d, n, generator=g) * 2)
    B, C = torch.randn(b, l, n, generator=g), torch.randn(b, l, n, generator=g)
    return x, dt, A, B, C, torch.randn(b, d, n, generator=g)


@pytest.mark.parametrize("form", ["hop", "chunked-4", "chunked-16"])
@pytest.mark.parametrize("l", [1, 2, 7, 33, 64])
def test_scan_forms_equal_the_loop(form, l):
    """Every exportable form equals the reference loop, also where the chunk does not divide l (padding)."""
    ins = _scan_inputs(2, l, 6, 4, seed=l)
    fn = scan_hop if form == "hop" else partial(scan_chunked, chunk=int(form.split("-")[1]))
    y, h = fn(*ins)
    y_ref, h_ref = scan_ref(*ins)
    assert y.shape == y_ref.shape == (2, l, 6) and h.shape == h_ref.shape == (2, 6, 4)
    err = _max_err((y, h), (y_ref, h_ref))
    report(f"scan {form} vs scan_ref l={l}", err, 1e-5)
    assert err < 1e-5


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
