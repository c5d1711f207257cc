"""Streams answer frames: equal to the PyTorch model end to end, independent of each other, robust to bad input."""

import numpy as np
import pytest

from edge.errors import FrameError, PromptError, StreamError
from edge.runtime import Runtime
from tests.conftest import torch_greedy

PROMPT = "What is in the image?"


@pytest.fixture
def runtime(tiny_artifact):
    return Runtime.load(tiny_artifact, max_streams=4, threads=1)


def test_answer_has_text_tokens_and_profile(runtime, frames):
    cam = runtime.open_stream("front")
    ans = cam.ask(frames[0], PROMPT, max_new_tokens=6, timestamp=0.0)
    assert 1 <= len(ans.token_ids) <= 6 and isinstance(ans.text, str)
    p = ans.profile
    for stage in ("preprocess", "vision", "projector", "prefill", "decode"):
        assert getattr(p, stage) > 0, stage
    assert p.total >= p.preprocess + p.vision + p.projector + p.prefill + p.decode
    assert p.prefill_tokens == 64 + len(runtime.tokenizer.encode_prompt(PROMPT))
    assert p.age_ms is not None and p.age_ms > 0
    assert cam.stats.answered == 1 and cam.stats.errors == 0


def test_matches_pytorch_end_to_end(runtime, tiny_model, frames):
    cam = runtime.open_stream("cam")
    for frame in frames[:3]:
        ans = cam.ask(frame, PROMPT, max_new_tokens=8)
        want = torch_greedy(tiny_model, runtime.tokenizer, frame, PROMPT, 8)
        print("onnx", ans.token_ids, "torch", want)
        assert ans.token_ids == want


def test_interleaving_does_not_matter(tiny_artifact, frames):
    """Two streams answering different frames in any order == each stream alone; states too."""
    def run(order):
        rt = Runtime.load(tiny_artifact, max_streams=2)
        s = {"a": rt.open_stream("a"), "b": rt.open_stream("b")}
        got = {"a": [], "b": []}
        feed = {"a": iter(frames[:2]), "b": iter(frames[2:4])}
        for name in order:
            got[name].append(s[name].ask(next(feed[name]), PROMPT, max_new_tokens=5).token_ids)
        return got, {n: [a.copy() for a in st.state] for n, st in s.items()}

    base, base_state = run("aabb")
    for order in ("abab", "bbaa", "baab"):
        got, state = run(order)
        assert got == base, order
        for n in "ab":
            for x, y in zip(state[n], base_state[n]):
                np.testing.assert_array_equal(x, y)


def test_reset_stream_equals_fresh(runtime, frames):
    a = runtime.open_stream("a")
    a.ask(frames[0], PROMPT, max_new_tokens=4)
    assert a.state[1].any()
    a.reset()
    fresh = runtime.open_stream("fresh")
    for x, y in zip(a.state, fresh.state):
        np.testing.assert_array_equal(x, y)
    assert a.ask(frames[1], PROMPT, 5).token_ids == fresh.ask(frames[1], PROMPT, 5).token_ids


def test_bytes_per_stream_is_its_slab(runtime):
    s = runtime.open_stream("s")
    conv, ssm = s.state
    assert runtime.bytes_per_stream == conv.nbytes + ssm.nbytes


@pytest.mark.parametrize("bad, message", [
    (None, "frame is None"),
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.zeros((64, 64, 3), np.float32), "must be uint8"),
    (np.zeros((64, 64, 4), np.uint8), r"got shape \[64, 64, 4\]"),
    (np.zeros((64, 64), np.uint8), r"got shape \[64, 64\]"),
])
def test_bad_frame_leaves_other_streams_working(runtime, frames, bad, message):
    good, broken = runtime.open_stream("good"), runtime.open_stream("broken")
    before = good.ask(frames[0], PROMPT, 5).token_ids
    broken.ask(frames[1], PROMPT, 5)
    state_before = [x.copy() for x in broken.state]
    with pytest.raises(FrameError, match=message) as e:
        broken.ask(bad, PROMPT, 5)
    assert "stream 'broken'" in str(e.value)
    assert broken.stats.errors == 1 and "stream 'broken'" in broken.stats.last_error
    for x, y in zip(broken.state, state_before):  # the failed frame changed nothing
        np.testing.assert_array_equal(x, y)
    assert good.ask(frames[0], PROMPT, 5).token_ids == before
    assert broken.ask(frames[0], PROMPT, 5).token_ids == before  # and the broken one recovers


def test_stream_lifecycle_errors(runtime, frames):
    s = runtime.open_stream("x")
    with pytest.raises(StreamError, match="already open"):
        runtime.open_stream("x")
    with pytest.raises(StreamError, match="max_new_tokens"):
        s.ask(frames[0], PROMPT, max_new_tokens=-1)
    with pytest.raises(PromptError, match="stream 'x': prompt must be a str"):
        s.ask(frames[0], None)
    assert s.stats.errors == 2
    s.close()
    with pytest.raises(StreamError, match="closed"):
        s.ask(frames[0], PROMPT)
    runtime.open_stream("x")  # the name and the slot are free again
    for i in range(3):
        runtime.open_stream(f"n{i}")
    with pytest.raises(StreamError, match="state slots are in use"):
        runtime.open_stream("one-too-many")


def test_zero_new_tokens_and_text_prompts(runtime, frames):
    s = runtime.open_stream("t")
    assert s.ask(frames[0], PROMPT, max_new_tokens=0).token_ids == []
    ans = s.ask_text("Describe the scene.", max_new_tokens=4)
    assert ans.profile.vision == 0 and ans.profile.prefill > 0 and len(ans.token_ids) <= 4
