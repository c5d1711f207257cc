"""Projector kinds other than the tiny default export, match PyTorch, and answer frames through the runtime
unchanged (the runtime learns the visual token count from the manifest)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge.manifest import Manifest  # noqa: E402
from edge.runtime import Runtime  # noqa: E402
from export.config import preset  # noqa: E402
from export.model import build_random  # noqa: E402
from export.onnx_export import export_model  # noqa: E402


@pytest.mark.parametrize("name, tokens", [("tiny-ldp", 16), ("tiny-mlp", 64)])
def test_projector_preset_exports_and_answers(name, tokens, tmp_path):
    out = export_model(build_random(preset(name), seed=2), tmp_path / name).out_dir
    m = Manifest.load(out)
    assert m.visual_tokens == tokens
    assert m.graphs["projector"].outputs["visual_embeds"].shape == ("B", tokens, 64)
    err = m.parity["graphs"]["projector"]["visual_embeds"]
    print(f"{name}: projector max abs err {err['max_abs_err']:.2e} (tol {err['tol']:.1e})")
    assert err["max_abs_err"] <= err["tol"]
    rt = Runtime.load(out)
    ans = rt.open_stream("cam").ask(np.full((120, 160, 3), 90, np.uint8), "What is in the image?", max_new_tokens=3)
    assert ans.profile.prefill_tokens == tokens + len(rt.tokenizer.encode_prompt("What is in the image?"))
