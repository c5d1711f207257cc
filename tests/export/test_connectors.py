"""The connector family (Cobra's MLPs and LDP, Cambrian-1's SVA, MG-LLaVA's Conv-Gate + object tokens,
mPLUG-Owl2's abstractor): each tiny preset exports, its graphs match PyTorch, and it answers frames through the
unchanged runtime, which learns T, the vision outputs and the box inputs from the manifest."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge.errors import FrameError, StreamError  # noqa: E402
from edge.manifest import Manifest  # noqa: E402
from edge.runtime import Runtime  # noqa: E402
from edge.sources import SyntheticSource  # noqa: E402
from export.config import preset  # noqa: E402
from export.model import build_random  # noqa: E402
from export.onnx_export import export_model  # noqa: E402
from tests.conftest import torch_greedy  # noqa: E402

PROMPT = "What is in the image?"
KINDS = {"tiny-mlp": 64, "tiny-ldp": 16, "tiny-sva": 25, "tiny-mg": 64, "tiny-abstractor": 16}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """name -> (model, artifact dir), each exported once per module (~15 s each)."""
    cache = {}

    def get(name):
        if name not in cache:
            model = build_random(preset(name), seed=2)
            cache[name] = (model, export_model(model, tmp_path_factory.mktemp(name) / name).out_dir)
        return cache[name]

    return get


def _frames():
    src = SyntheticSource(seed=5)
    return [(f, src.boxes.copy()) for f, _ in (src.read() for _ in range(2))]


@pytest.mark.parametrize("name", list(KINDS))
def test_connector_exports_and_answers_like_pytorch(name, exported):
    model, out = exported(name)
    tokens = KINDS[name]
    m = Manifest.load(out)
    assert m.visual_tokens == tokens == model.cfg.num_visual_tokens
    assert m.graphs["projector"].outputs["visual_embeds"].shape == ("B", tokens, 64)
    for graph in ("vision", "projector"):
        for tensor, err in m.parity["graphs"][graph].items():
            print(f"{name} {graph}.{tensor}: max abs err {err['max_abs_err']:.2e} (tol {err['tol']:.1e})")
            assert err["max_abs_err"] <= err["tol"]
    rt = Runtime.load(out)
    cam = rt.open_stream("cam")
    for frame, boxes in _frames():
        boxes = boxes if rt.takes_boxes else None
        ans = cam.ask(frame, PROMPT, max_new_tokens=6, boxes=boxes)
        n_obj = 0 if boxes is None else len(boxes)
        assert ans.profile.prefill_tokens == tokens + n_obj + len(rt.tokenizer.encode_prompt(PROMPT))
        want = torch_greedy(model, rt.tokenizer, frame, PROMPT, 6, boxes=boxes)
        print(name, "onnx", ans.token_ids, "torch", want)
        assert ans.token_ids == want


def test_multi_scale_vision_graph_emits_one_tensor_per_encoder(exported):
    _, out = exported("tiny-sva")
    m = Manifest.load(out)
    assert m.graphs["vision"].inputs["pixels"].shape == ("B", 224, 224, 3)  # the largest encoder's resolution
    shapes = {n: s.shape for n, s in m.graphs["vision"].outputs.items()}
    assert shapes == {"features_dinov2": ("B", 64, 64), "features_siglip": ("B", 256, 48)}
    assert set(m.graphs["projector"].inputs) == set(shapes)


def test_object_tokens_follow_the_boxes(exported):
    model, out = exported("tiny-mg")
    rt = Runtime.load(out)
    assert rt.takes_boxes
    spec = rt.engines["projector"].inputs
    assert spec["boxes"].shape == ("B", "K", 4) and spec["box_mask"].dtype == "bool"
    cam = rt.open_stream("cam")
    frame, boxes = _frames()[0]
    prompt_len = len(rt.tokenizer.encode_prompt(PROMPT))
    none = cam.ask(frame, PROMPT, max_new_tokens=4)  # zero boxes: no object token reaches the LM
    assert none.profile.prefill_tokens == 64 + prompt_len
    assert none.token_ids == torch_greedy(model, rt.tokenizer, frame, PROMPT, 4)
    one = cam.ask(frame, PROMPT, max_new_tokens=4, boxes=boxes[:1])
    assert one.profile.prefill_tokens == 65 + prompt_len
    assert cam.ask(frame, PROMPT, max_new_tokens=4, boxes=[]).profile.prefill_tokens == 64 + prompt_len


def test_projector_graph_equals_pytorch_on_border_boxes(exported):
    """Boxes at fractional coordinates, reaching past every border, and masked padding, through ONNX (GridSample)."""
    model, out = exported("tiny-mg")
    rt = Runtime.load(out)
    g = torch.Generator().manual_seed(0)
    low, high = torch.randn(2, 64, 64, generator=g), torch.randn(2, 196, 64, generator=g)
    boxes = torch.tensor([[[-0.2, -0.1, 0.33, 0.41], [0.7, 0.65, 1.3, 1.05], [0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 0.5, 0.5]],
                          [[0.12, 0.37, 0.61, 0.99], [-1.5, -1.5, -1.1, -1.2], [0.9, 0.0, 1.0, 0.1], [0.2, 0.3, 0.4, 0.5]]])
    mask = torch.tensor([[True, True, True, True], [True, True, False, True]])
    with torch.no_grad():
        want_vis, want_obj = model.projector(low, high, boxes, mask)
    got = rt.engines["projector"].run({"features_clip": low.numpy(), "features_convnext": high.numpy(),
                                       "boxes": boxes.numpy(), "box_mask": mask.numpy()})
    err = float(np.abs(got["object_embeds"] - want_obj.numpy()).max())
    print(f"object_embeds on border boxes: max abs err {err:.2e}")
    assert err <= 1e-4 + 1e-4 * float(want_obj.abs().max())
    assert np.all(got["object_embeds"][1, 2] == 0)  # masked
    assert np.abs(got["visual_embeds"] - want_vis.numpy()).max() <= 1e-4 * (1 + float(want_vis.abs().max()))


@pytest.mark.parametrize("boxes, words", [
    (np.zeros((2, 3)), r"shaped \[K, 4\]"),
    ([[0.5, 0.5, 0.2, 0.9]], "x2 < x1"),
    ([[0.1, float("nan"), 0.2, 0.3]], "NaN"),
    ("boxes", "numbers shaped"),
])
def test_bad_boxes_fail_on_their_stream_only(exported, boxes, words):
    _, out = exported("tiny-mg")
    rt = Runtime.load(out)
    bad, good = rt.open_stream("bad"), rt.open_stream("good")
    frame, ok_boxes = _frames()[0]
    with pytest.raises(FrameError, match=words) as e:
        bad.ask(frame, PROMPT, max_new_tokens=2, boxes=boxes)
    assert "'bad'" in str(e.value) and bad.stats.errors == 1
    assert good.ask(frame, PROMPT, max_new_tokens=2, boxes=ok_boxes).token_ids is not None
    assert good.stats.answered == 1


def test_boxes_for_a_model_without_object_tokens_are_refused(exported):
    _, out = exported("tiny-abstractor")
    rt = Runtime.load(out)
    assert not rt.takes_boxes
    with pytest.raises(StreamError, match="no object tokens"):
        rt.open_stream("cam").ask(_frames()[0][0], PROMPT, boxes=[[0, 0, 1, 1]])
