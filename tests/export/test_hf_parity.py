"""Parity with an independent implementation: Hugging Face transformers' MambaForCausalLM.

A random HF model is saved with save_pretrained, loaded through our loader, and compared after a prefill and
after 20 cached steps: logits and both states, for the PyTorch reference and for the exported ONNX graphs.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from edge.manifest import Manifest  # noqa: E402
from edge.runtime import Runtime  # noqa: E402
from engines import load_engine  # noqa: E402
from export.cli import export_checkpoint  # noqa: E402
from export.config import ModelConfig, tiny  # noqa: E402
from export.loaders import build_from_checkpoint, load_lm_into, load_mamba_folder  # noqa: E402
from export.model import build_random  # noqa: E402
from export.onnx_export import export_model  # noqa: E402
from export.tokenizer import build_tiny_tokenizer  # noqa: E402
from tests.conftest import report  # noqa: E402

N_LAYER, STEPS, TOL = 3, 20, 1e-4


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    from transformers import MambaConfig, MambaForCausalLM

    torch.manual_seed(0)
    hf = MambaForCausalLM(MambaConfig(vocab_size=512, hidden_size=64, num_hidden_layers=N_LAYER, state_size=16,
                                      conv_kernel=4, expand=2)).eval()
    folder = tmp_path_factory.mktemp("hf") / "mamba-hf"
    hf.save_pretrained(folder)
    build_tiny_tokenizer(508).save(str(folder / "tokenizer.json"))
    return folder, hf


def _hf_states(cache):
    conv = torch.stack([cache.get_conv_state(i)[..., 1:] for i in range(N_LAYER)], dim=1)  # HF keeps d_conv columns
    ssm = torch.stack([cache.get_recurrent_state(i) for i in range(N_LAYER)], dim=1)
    return conv, ssm


def _err(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).max())


def _hf_trace(hf, ids):
    """HF prefill then STEPS greedy cached steps: [(logits [B, V], conv, ssm)] after each, and the tokens fed."""
    with torch.no_grad():
        out = hf(input_ids=ids, use_cache=True)
        trace = [(out.logits[:, -1], *_hf_states(out.cache_params))]
        fed = []
        for _ in range(STEPS):
            tok = trace[-1][0].argmax(-1)
            fed.append(tok)
            out = hf(input_ids=tok[:, None], cache_params=out.cache_params, use_cache=True)
            trace.append((out.logits[:, -1], *_hf_states(out.cache_params)))
    return trace, fed


def _assert_traces_close(who, ours, trace):
    """Logits and both states after the prefill and after the last step, within TOL."""
    for label, i in (("prefill", 0), (f"{STEPS} steps", STEPS)):
        for name, a, b in zip(("logits", "conv_state", "ssm_state"), ours[i], trace[i]):
            err = _err(a, b)
            report(f"{who} vs HF after {label}: {name}", err, TOL)
            assert err < TOL


def test_reference_matches_hf(hf_folder):
    folder, hf = hf_folder
    model, _ = build_from_checkpoint(folder)
    ids = torch.randint(0, 512, (2, 11), generator=torch.Generator().manual_seed(1))
    trace, fed = _hf_trace(hf, ids)
    llm = model.llm
    with torch.no_grad():
        logits, conv, ssm = llm.forward_embeds(llm.embed(ids), *llm.empty_state(2))
        ours = [(logits[:, -1], conv, ssm)]
        for tok in fed:
            ours.append(llm.step(tok, ours[-1][1], ours[-1][2]))
    _assert_traces_close("torch", ours, trace)


def test_onnx_matches_hf(hf_folder, tmp_path):
    folder, hf = hf_folder
    result = export_checkpoint(folder, tmp_path / "art", show_progress=False)
    m = Manifest.load(result.out_dir)
    assert not m.has_vision and set(m.graphs) == {"embed", "prefill", "step"}
    e = {n: load_engine("onnxruntime", g.path, name=n) for n, g in m.graphs.items()}
    ids = torch.randint(0, 512, (2, 11), generator=torch.Generator().manual_seed(2))
    trace, fed = _hf_trace(hf, ids)
    emb = e["embed"].run({"input_ids": ids.numpy()})["inputs_embeds"]
    conv, ssm = m.state.zeros(2)
    out = e["prefill"].run({"inputs_embeds": emb, "conv_state": conv, "ssm_state": ssm})
    ours = [(out["logits"], out["conv_state_out"], out["ssm_state_out"])]
    for tok in fed:
        out = e["step"].run({"input_ids": tok.numpy(), "conv_state": ours[-1][1], "ssm_state": ours[-1][2]})
        ours.append((out["logits"], out["conv_state_out"], out["ssm_state_out"]))
    _assert_traces_close("onnx", ours, trace)


def test_language_model_only_artifact_answers_text(hf_folder, tmp_path):
    folder, _ = hf_folder
    out = export_checkpoint(folder, tmp_path / "lm", show_progress=False).out_dir
    rt = Runtime.load(out)
    s = rt.open_stream("text")
    ans = s.ask_text("Is the path clear?", max_new_tokens=5)
    assert 1 <= len(ans.token_ids) <= 5 and ans.profile.vision == 0 and ans.profile.prefill > 0
    from edge.errors import StreamError

    with pytest.raises(StreamError, match="has no vision graphs; use ask_text"):
        s.ask(np.zeros((8, 8, 3), np.uint8), "x")


def test_two_frames_in_a_row_match_hf(hf_folder, tmp_path, frames):
    """A continuous stream answering two frames == HF run on [vis1, prompt, answer1, vis2, prompt] embeddings."""
    folder, hf = hf_folder
    lm_cfg, state, _ = load_mamba_folder(folder)
    model = build_random(ModelConfig(name="hf-cobra", lm=lm_cfg, vision=tiny().vision))
    load_lm_into(model.llm, state, str(folder))
    export_model(model, tmp_path / "art", tokenizer=folder / "tokenizer.json")
    rt = Runtime.load(tmp_path / "art")
    cam = rt.open_stream("cam", mode="continuous")
    prompt, n = "What is in the image?", 6
    a1 = cam.ask(frames[0], prompt, max_new_tokens=n).token_ids
    a2 = cam.ask(frames[1], prompt, max_new_tokens=n).token_ids

    from edge.preprocess import preprocess

    def vis(frame):
        return model.visual_embeds(torch.from_numpy(preprocess(frame, model.cfg.image_size)[None]))

    p_ids = torch.from_numpy(rt.tokenizer.encode_prompt(prompt))[None]
    embed = hf.backbone.embeddings

    def hf_greedy(x):
        with torch.no_grad():
            out = hf(inputs_embeds=x, use_cache=True)
            toks = []
            for _ in range(n):
                tok = out.logits[:, -1].argmax(-1)
                if int(tok) == 0:
                    break
                toks.append(int(tok))
                out = hf(input_ids=tok[:, None], cache_params=out.cache_params, use_cache=True)
        return toks, _hf_states(out.cache_params)  # the state after the answer's last token

    with torch.no_grad():
        x1 = torch.cat([vis(frames[0]), embed(p_ids)], dim=1)
        want1, _ = hf_greedy(x1)
        x2 = torch.cat([x1, embed(torch.tensor([a1])), vis(frames[1]), embed(p_ids)], dim=1)
        want2, hf_state = hf_greedy(x2)
    print("frame 1", a1, want1, "frame 2", a2, want2)
    assert a1 == want1 and a2 == want2
    # the stream's state after two frames and two answers is HF's state after the same sequence
    for name, ours, theirs in zip(("conv_state", "ssm_state"), cam.state, hf_state):
        err = _err(ours, theirs)
        report(f"continuous stream vs HF after 2 frames: {name}", err, TOL)
        assert err < TOL
