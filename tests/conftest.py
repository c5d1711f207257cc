"""Shared fixtures: the tiny model exported once per test session."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"


def pytest_report_header(config):
    try:
        import torch

        return f"torch {torch.__version__}"
    except ImportError:
        return "torch not installed: export tests will skip"


@pytest.fixture(scope="session")
def tiny_model():
    pytest.importorskip("torch")
    from export.config import tiny
    from export.model import build_random

    return build_random(tiny(), seed=0)


@pytest.fixture(scope="session")
def tiny_artifact(tiny_model, tmp_path_factory) -> Path:
    """The tiny model exported to ONNX (about 15 s on 2 cores)."""
    from export.onnx_export import export_model

    out = tmp_path_factory.mktemp("artifacts") / "tiny"
    export_model(tiny_model, out)
    return out


@pytest.fixture
def artifact_copy(tiny_artifact, tmp_path) -> Path:
    """A private copy a test may tamper with."""
    dst = tmp_path / "tiny"
    shutil.copytree(tiny_artifact, dst)
    return dst


@pytest.fixture
def frames():
    """A few distinct BGR frames of different sizes."""
    rng = np.random.default_rng(0)
    out = []
    for h, w in [(240, 320), (480, 640), (90, 120), (112, 112)]:
        f = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        f[h // 4: h // 2, w // 4: w // 2] = rng.integers(0, 256, 3, dtype=np.uint8)
        out.append(f)
    return out


def report(label: str, err: float, tol: float) -> None:
    """Parity tests print the max error before asserting it."""
    print(f"{label}: max abs err {err:.3e} (tol {tol:.1e})")


def torch_greedy(model, tokenizer, frame, prompt, max_new_tokens, boxes=None):
    """The answer computed by the PyTorch reference alone (loop scan, torch step), for comparison with the
    runtime. boxes: normalised [K, 4] for models with object tokens."""
    torch = pytest.importorskip("torch")
    from edge.preprocess import preprocess

    pixels = torch.from_numpy(preprocess(frame, model.cfg.image_size)[None])
    ids = torch.from_numpy(tokenizer.encode_prompt(prompt)[None])
    llm = model.llm
    with torch.no_grad():
        box_t = None if boxes is None else torch.as_tensor(np.asarray(boxes, np.float32))[None]
        x = torch.cat([model.visual_embeds(pixels, box_t), llm.embed(ids)], dim=1)
        logits, conv, ssm = llm.forward_embeds(x, *llm.empty_state(1))
        logits = logits[:, -1]
        out = []
        for _ in range(max_new_tokens):
            tok = int(logits[0].argmax())
            if tok == model.cfg.eos_token_id:
                break
            out.append(tok)
            logits, conv, ssm = llm.step(torch.tensor([tok]), conv, ssm)
    return out


@pytest.fixture(scope="session")
def trained_artifact(tmp_path_factory) -> Path:
    """The embedded trained weights (export/trained/tiny.safetensors) exported with fp16 and int8 variants."""
    pytest.importorskip("torch")
    from export.cli import export_trained

    return export_trained(tmp_path_factory.mktemp("trained") / "tiny", None, show_progress=False,
                          precisions=("fp32", "fp16", "int8")).out_dir
