"""Batched answering equals answering stream by stream (tokens and states); forks answer many prompts with one
image pass; answer-set scoring picks what full-sequence log-probabilities of the PyTorch reference pick."""

import numpy as np
import pytest

from edge.batch import Request
from edge.errors import FrameError
from edge.runtime import Runtime

PROMPTS = ["What is in the image?", "Is there a red car?", "Describe it."]


@pytest.fixture
def runtime(tiny_artifact):
    return Runtime.load(tiny_artifact, max_streams=8, threads=1)


class Counting:
    """Wraps an engine and counts its calls and the rows it was given."""

    def __init__(self, engine):
        self.engine, self.calls, self.rows = engine, 0, 0
        self.inputs, self.outputs, self.name = engine.inputs, engine.outputs, engine.name
        self.tokens = []  # L of each prefill call (1: a decode step through the prefill graph)
        self.prompt_rows = 0  # rows of the prefill calls with L > 1 (images and prompts, not decode steps)

    def run(self, feeds):
        self.calls += 1
        self.rows += next(iter(feeds.values())).shape[0]
        if "inputs_embeds" in feeds:
            self.tokens.append(feeds["inputs_embeds"].shape[1])
            if feeds["inputs_embeds"].shape[1] > 1:
                self.prompt_rows += feeds["inputs_embeds"].shape[0]
        return self.engine.run(feeds)

    def steps(self, decode: str) -> int:
        """Decode steps this engine ran: every call of the step graph, the L = 1 calls of the prefill graph."""
        return self.calls if self.name == "step" else sum(t == 1 for t in self.tokens)


def _count(rt):
    rt.engines = {k: Counting(v) for k, v in rt.engines.items()}
    return rt.engines


def _history(stream, frames):
    """Give a continuous stream some past frames, so streams in a batch are at different points."""
    for f in frames:
        stream.ask(f, "Remember this.", max_new_tokens=2)


def test_batched_equals_unbatched(tiny_artifact, frames):
    """Three streams at different points (a continuous one with history, a reset one, one with another prompt
    length and fewer tokens to decode) in one batch, against the same requests one by one on another runtime."""
    results = {}
    for batched in (True, False):
        rt = Runtime.load(tiny_artifact, max_streams=4, threads=1)
        a = rt.open_stream("a", mode="continuous")
        b = rt.open_stream("b")
        c = rt.open_stream("c", mode="continuous")
        _history(a, frames[2:4])
        reqs = [Request(a, frames[0], PROMPTS[0], 6), Request(b, frames[1], PROMPTS[1], 8),
                Request(c, frames[2], PROMPTS[2], 3)]
        engines = _count(rt)
        answers = rt.answer(reqs) if batched else [rt.answer([r])[0] for r in reqs]
        results[batched] = ([x.token_ids for x in answers], [s.state for s in (a, b, c)], engines, answers)
    (tok_b, st_b, eng_b, ans_b), (tok_u, st_u, eng_u, _) = results[True], results[False]
    print("batched", tok_b, "one by one", tok_u)
    assert tok_b == tok_u
    for (cb, sb), (cu, su) in zip(st_b, st_u):
        assert np.abs(cb - cu).max() < 1e-5 and np.abs(sb - su).max() < 1e-5
    assert eng_b["vision"].calls == 1 and eng_b["vision"].rows == 3 and eng_u["vision"].calls == 3
    decode = "prefill" if "step" not in eng_b else "step"
    assert sum(t > 1 for t in eng_b["prefill"].tokens) <= 3  # one prefill per total length
    assert eng_b[decode].steps(decode) < eng_u[decode].steps(decode)  # decode steps batched
    assert all(x.profile.batch_size == 3 for x in ans_b)


def test_a_bad_frame_fails_alone_in_its_batch(runtime, frames):
    good, bad = runtime.open_stream("good"), runtime.open_stream("bad")
    results = runtime.answer([Request(good, frames[0], PROMPTS[0], 4), Request(bad, frames[0][:, :, :2], PROMPTS[0], 4),
                              Request(bad, frames[1].astype(np.float32), PROMPTS[0], 4)])
    assert results[0].token_ids and isinstance(results[1], FrameError) and isinstance(results[2], FrameError)
    assert "'bad'" in str(results[1]) and bad.stats.errors == 2 and good.stats.answered == 1


def test_fork_answers_many_prompts_with_one_image_pass(runtime, frames):
    cam = runtime.open_stream("cam")
    fresh = [cam.ask(frames[0], p, max_new_tokens=6).token_ids for p in PROMPTS]
    engines = _count(runtime)
    answers = cam.ask_many(frames[0], PROMPTS, max_new_tokens=6)
    assert [a.token_ids for a in answers] == fresh
    assert engines["vision"].calls == 1 and engines["projector"].calls == 1
    assert engines["prefill"].prompt_rows == 1 + len(PROMPTS)  # the image once, then each prompt (one batch)
    assert answers[1].profile.prefill_tokens == len(runtime.tokenizer.encode_prompt(PROMPTS[1]))
    assert answers[1].profile.vision == 0 and answers[0].profile.vision > 0
    with pytest.raises(FrameError, match="frame is None"):  # never taken as a text-only prompt
        cam.fork(None)
    fork = cam.fork(frames[1])
    assert fork.ask(PROMPTS[2], 6).token_ids == cam.ask(frames[1], PROMPTS[2], max_new_tokens=6).token_ids


def test_snapshot_restore(runtime, frames):
    cam = runtime.open_stream("cam", mode="continuous")
    cam.ask(frames[0], PROMPTS[0], max_new_tokens=3)
    snap = cam.snapshot()
    first = cam.ask(frames[1], PROMPTS[1], max_new_tokens=5).token_ids
    cam.restore(snap)
    assert cam.ask(frames[1], PROMPTS[1], max_new_tokens=5).token_ids == first


def _reference_log_probs(model, tokenizer, frame, prompt, answers):
    torch = pytest.importorskip("torch")
    from edge.preprocess import preprocess

    llm = model.llm
    pixels = torch.from_numpy(preprocess(frame, model.cfg.image_size)[None])
    ids = torch.from_numpy(tokenizer.encode_prompt(prompt)[None])
    out = {}
    with torch.no_grad():
        for a in answers:
            ans = torch.from_numpy(tokenizer.encode_text(a)[None])
            x = torch.cat([model.visual_embeds(pixels), llm.embed(ids), llm.embed(ans)], dim=1)
            logits, _, _ = llm.forward_embeds(x, *llm.empty_state(1))
            n = ans.shape[1]
            logp = torch.log_softmax(logits[0, -n - 1:-1].double(), dim=-1)
            out[a] = float(logp[torch.arange(n), ans[0]].sum())
    return out


def test_answer_set_scoring_matches_pytorch(runtime, tiny_model, frames):
    cam = runtime.open_stream("cam")
    answers = ["yes", "no", "a red car", "maybe not"]
    for frame in frames[:3]:
        choice = cam.choose(frame, "Is there a car?", answers)
        ref = _reference_log_probs(tiny_model, runtime.tokenizer, frame, "Is there a car?", answers)
        err = max(abs(choice.log_probs[a] - ref[a]) for a in answers)
        print(f"scores {choice.log_probs} ref {ref}: max abs err {err:.2e}")
        assert choice.answer == max(ref, key=ref.get) and err < 1e-3
        assert 0 < choice.probability <= 1 and choice.profile.vision > 0
    with pytest.raises(FrameError, match="'cam': frame is None"):
        cam.choose(None, "Is there a car?", answers)
    with pytest.raises(Exception, match="distinct non-empty"):
        cam.choose(frames[0], "?", ["yes", "yes"])
