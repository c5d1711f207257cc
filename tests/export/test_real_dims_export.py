"""A real-dimension model exported in full: mamba-130m (random weights), about a minute on 2 cores."""

import pytest

torch = pytest.importorskip("torch")

from edge.manifest import Manifest  # noqa: E402
from edge.runtime import Runtime  # noqa: E402
from export.config import preset  # noqa: E402
from export.model import build_random  # noqa: E402
from export.onnx_export import export_model  # noqa: E402


@pytest.mark.slow
def test_mamba_130m_exports_and_answers(tmp_path):
    out = export_model(build_random(preset("mamba-130m")), tmp_path / "mamba-130m").out_dir
    m = Manifest.load(out)
    lm = m.model["lm"]
    assert (lm["d_model"], lm["n_layer"], lm["vocab_padded"]) == (768, 24, 50280)
    assert m.graphs["step"].inputs["ssm_state"].shape == ("B", 24, 1536, 16)
    assert m.state.bytes_per_stream == 24 * 1536 * (3 + 16) * 4
    for graph, outs in m.parity["graphs"].items():
        for name, v in outs.items():
            print(f"mamba-130m {graph}.{name}: max abs err {v['max_abs_err']:.2e} (tol {v['tol']:.1e})")
            assert v["max_abs_err"] <= v["tol"]
    ans = Runtime.load(out, verify_hashes=False).open_stream("s").ask_text("hello", max_new_tokens=3)
    assert len(ans.token_ids) <= 3 and ans.profile.prefill > 0
