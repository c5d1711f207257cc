"""Action heads: the checkpoint layout, export (prefill's hidden_states + one graph per head, listed in the
manifest), and the runtime's act/ask against the PyTorch head on the PyTorch model's hidden states."""

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge.errors import ManifestError, StreamError  # noqa: E402
from edge.runtime import Request, Runtime  # noqa: E402
from edge.world import make_item  # noqa: E402
from export.checkpoints import CheckpointError  # noqa: E402
from export.heads import ActionHead, HeadConfig, HeadOutput, build_heads, load_heads, save_heads  # noqa: E402

FP32_TOL = 1e-4


def _configs(d_model, image_tokens):
    return [HeadConfig("target", d_model, (HeadOutput("bearing", "1", -1, 1), HeadOutput("distance", "m", 0, 4))),
            HeadConfig("clear", d_model, (HeadOutput("blocked", "1", 0, 1),), positions=("last",)),
            HeadConfig("spot", d_model, (HeadOutput("x", "1", 0, 1),), positions=("image", "last"), pool="concat",
                       image_tokens=image_tokens)]


@pytest.fixture(scope="module")
def heads(tiny_model):
    return build_heads(_configs(tiny_model.cfg.lm.d_model, tiny_model.cfg.num_visual_tokens), seed=3)


@pytest.fixture(scope="module")
def head_artifact(tiny_model, heads, tmp_path_factory):
    from export.onnx_export import export_model

    out = tmp_path_factory.mktemp("heads") / "tiny-heads"
    export_model(tiny_model, out, heads=tuple(heads), heads_source={"source": "random", "seed": 3})
    return out


def _torch_values(model, heads, tokenizer, frame, prompt):
    """The PyTorch model's hidden states at the heads' positions (image: every visual token; image_end; last),
    through the PyTorch heads."""
    from edge.preprocess import preprocess

    llm = model.llm
    with torch.no_grad():
        vis = model.visual_embeds(torch.from_numpy(preprocess(frame, model.cfg.image_size)[None]))
        ids = torch.from_numpy(tokenizer.encode_prompt(prompt)[None])
        _, hidden, _, _ = llm.forward_hidden(torch.cat([vis, llm.embed(ids)], dim=1), *llm.empty_state(1))
        at = {"image": list(range(vis.shape[1])), "image_end": [vis.shape[1] - 1], "last": [hidden.shape[1] - 1]}
        out = {}
        for h in heads:
            x = hidden[:, [i for p in h.cfg.positions for i in at[p]]]
            out.update({o.name: float(v) for o, v in zip(h.cfg.outputs, h(x)[0])})
    return out


def test_save_load_round_trip_and_strictness(heads, tmp_path):
    path = save_heads(heads, tmp_path / "h.safetensors", record={"steps": 3})
    loaded, record = load_heads(path)
    assert record == {"steps": 3} and [h.cfg for h in loaded] == [h.cfg for h in heads]
    x = torch.randn(5, 2, heads[0].cfg.d_model)
    assert torch.equal(loaded[0](x), heads[0](x))
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    meta = {"format": "cobra-edge-heads/1", "heads": json.dumps([h.cfg.to_dict() for h in heads])}
    save_file({k: v for k, v in tensors.items() if not k.endswith("fc2.bias")}, str(tmp_path / "m.safetensors"), meta)
    with pytest.raises(CheckpointError, match="head 'target' misses tensors.*fc2.bias"):
        load_heads(tmp_path / "m.safetensors")
    tensors["heads.target.out.weight"] = torch.zeros(3, heads[0].cfg.hidden[1])
    save_file(tensors, str(tmp_path / "w.safetensors"), meta)
    with pytest.raises(CheckpointError, match=r"out.weight \(3, 16\) \(expected \(2, 16\)\)"):
        load_heads(tmp_path / "w.safetensors")


def test_outputs_stay_within_their_ranges(heads):
    x = torch.randn(64, 2, heads[0].cfg.d_model) * 100
    y = heads[0](x)
    assert (y[:, 0] >= -1).all() and (y[:, 0] <= 1).all() and (y[:, 1] >= 0).all() and (y[:, 1] <= 4).all()


def test_config_refuses_unknown_positions_and_empty_ranges():
    with pytest.raises(ValueError, match="positions"):
        HeadConfig("h", 8, (HeadOutput("a", "1", 0, 1),), positions=("first",))
    with pytest.raises(ValueError, match="'image' position needs image_tokens > 0"):
        HeadConfig("h", 8, (HeadOutput("a", "1", 0, 1),), positions=("image", "last"))
    with pytest.raises(ValueError, match="'image' position needs image_tokens > 0, and only it"):
        HeadConfig("h", 8, (HeadOutput("a", "1", 0, 1),), image_tokens=4)
    with pytest.raises(ValueError, match="pool 'max'"):
        HeadConfig("h", 8, (HeadOutput("a", "1", 0, 1),), pool="max")


def test_concat_head_reads_every_vector_apart(tiny_model):
    """A concat head's first layer sees P x d_model values, so swapping two visual tokens changes its output,
    while a mean head is blind to the order."""
    d, T = 8, 4
    cat, mean = build_heads([HeadConfig("c", d, (HeadOutput("a", "1", 0, 1),), positions=("image", "last"),
                                        pool="concat", image_tokens=T),
                             HeadConfig("m", d, (HeadOutput("b", "1", 0, 1),), positions=("image", "last"),
                                        image_tokens=T)], seed=1)
    assert cat.fc1.in_features == (T + 1) * d and mean.fc1.in_features == d and cat.cfg.n_hidden == T + 1
    x = torch.randn(3, T + 1, d)
    swapped = x[:, [1, 0, 2, 3, 4]]
    assert not torch.allclose(cat(x), cat(swapped)) and torch.allclose(mean(x), mean(swapped))


def test_image_heads_must_match_the_models_visual_tokens(tiny_model, tmp_path):
    from export.heads import check_heads
    from export.onnx_export import export_model

    d, T = tiny_model.cfg.lm.d_model, tiny_model.cfg.num_visual_tokens
    wrong = build_heads([HeadConfig("h", d, (HeadOutput("a", "1", 0, 1),), positions=("image",), pool="concat",
                                    image_tokens=T - 1)])
    with pytest.raises(CheckpointError, match=f"as {T - 1} visual tokens, but the model gives {T} per frame"):
        export_model(tiny_model, tmp_path / "x", heads=tuple(wrong))
    with pytest.raises(CheckpointError, match="count of frame tokens varies"):
        check_heads(wrong, d, None)
    with pytest.raises(ValueError, match="lo < hi"):
        HeadConfig("h", 8, (HeadOutput("a", "1", 1, 1),))


def test_manifest_lists_heads_with_labels(head_artifact, tiny_model):
    raw = json.loads((head_artifact / "manifest.json").read_text())
    assert "hidden_states" in raw["graphs"]["prefill"]["outputs"]
    assert "head_target" not in raw["graphs"]
    target = raw["heads"]["list"][0]
    assert target["positions"] == ["image_end", "last"] and target["image_tokens"] == 0
    spot = raw["heads"]["list"][2]
    T, d = tiny_model.cfg.num_visual_tokens, tiny_model.cfg.lm.d_model
    assert spot["positions"] == ["image", "last"] and spot["image_tokens"] == T and spot["pool"] == "concat"
    assert spot["inputs"]["hidden"]["shape"] == ["B", T + 1, d]
    assert [v["name"] for v in target["values"]] == ["bearing", "distance"]
    assert target["values"][1] == {"name": "distance", "unit": "m", "range": [0.0, 4.0], "description": ""}
    assert raw["heads"]["source"] == {"source": "random", "seed": 3}
    parity = raw["parity"]["graphs"]
    assert parity["head_target"]["outputs"]["max_abs_err"] <= FP32_TOL
    assert parity["head_spot"]["outputs"]["max_abs_err"] <= FP32_TOL
    assert parity["prefill"]["hidden_states"]["max_abs_err"] <= parity["prefill"]["hidden_states"]["tol"]


def test_act_equals_the_pytorch_heads_and_the_heads_of_ask(head_artifact, tiny_model, heads):
    rt = Runtime.load(head_artifact)
    s = rt.open_stream("cam")
    for seed in range(3):
        item = make_item("position", (7, seed, 0))
        frame, prompt = item.frames()[0], item.question.prompt
        act = s.act(frame, prompt)
        want = _torch_values(tiny_model, heads, rt.tokenizer, frame, prompt)
        assert act.text == "" and act.token_ids == [] and set(act.outputs) == set(want)
        for k in want:
            assert abs(act.outputs[k] - want[k]) <= FP32_TOL, (k, act.outputs[k], want[k])
        ask = s.ask(frame, prompt, max_new_tokens=3)
        assert ask.outputs == act.outputs
        assert act.profile.decode < ask.profile.decode or ask.token_ids == []


def test_batched_act_equals_one_by_one(head_artifact):
    rt = Runtime.load(head_artifact)
    streams = [rt.open_stream(f"cam{i}") for i in range(4)]
    items = [make_item(f, (8, i, 0)) for i, f in enumerate(("colour", "count", "position", "presence"))]
    alone = [s.act(it.frames()[0], it.question.prompt).outputs for s, it in zip(streams, items)]
    both = rt.answer([Request(s, it.frames()[0], it.question.prompt, 0, act=True) if i % 2 else
                      Request(s, it.frames()[0], it.question.prompt, 2)
                      for i, (s, it) in enumerate(zip(streams, items))])
    for a, b in zip(alone, both):
        assert not isinstance(b, Exception)
        assert a.keys() == b.outputs.keys()
        assert all(abs(a[k] - b.outputs[k]) <= 1e-5 for k in a)


def test_continuous_act_keeps_the_state_of_image_and_prompt(head_artifact):
    rt = Runtime.load(head_artifact)
    s = rt.open_stream("cam", mode="continuous")
    item = make_item("colour", (9, 0, 0))
    s.act(item.frames()[0], item.question.prompt)
    after_one = s.snapshot()
    s.act(item.frames()[0], item.question.prompt)
    assert not np.array_equal(after_one.ssm, s.snapshot().ssm)  # the second frame started from the first's state


def test_artifact_without_heads_refuses_act_by_name(tiny_artifact):
    rt = Runtime.load(tiny_artifact)
    s = rt.open_stream("front")
    with pytest.raises(StreamError, match=r"stream 'front': artifact .* has no action heads"):
        s.act(np.zeros((64, 64, 3), np.uint8), "Where is it?")
    assert s.ask(np.zeros((64, 64, 3), np.uint8), "Where is it?", 2).outputs is None


def test_manifest_with_heads_but_no_hidden_states_is_refused(head_artifact, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(head_artifact, bad)
    raw = json.loads((bad / "manifest.json").read_text())
    del raw["graphs"]["prefill"]["outputs"]["hidden_states"]
    (bad / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ManifestError, match="no 'hidden_states' output"):
        Runtime.load(bad)


def test_heads_of_another_width_are_refused(tiny_model, tmp_path):
    from export.onnx_export import export_model

    wrong = [ActionHead(HeadConfig("h", tiny_model.cfg.lm.d_model + 1, (HeadOutput("a", "1", 0, 1),)))]
    with pytest.raises(CheckpointError, match="reads d_model 65, but the model's LM has d_model 64"):
        export_model(tiny_model, tmp_path / "x", heads=tuple(wrong))


def test_scheduler_runs_a_stream_in_act_mode_beside_an_asking_one(head_artifact, tiny_artifact):
    from edge.scheduler import FrameScheduler

    rt = Runtime.load(head_artifact)
    sched = FrameScheduler(rt, "Where is the red circle?", max_new_tokens=3)
    sched.add_stream("drive", act=True)
    sched.add_stream("watch")
    frames = {n: make_item("position", (10, i, 0)).frames()[0] for i, n in enumerate(("drive", "watch"))}
    for n, f in frames.items():
        sched.submit(n, f)
    got = {a.stream: a for a in sched.run_once()}
    assert got["drive"].text == "" and got["drive"].token_ids == [] and got["drive"].profile.batch_size == 2
    assert got["watch"].token_ids != [] or got["watch"].text == ""
    direct = Runtime.load(head_artifact).open_stream("x").act(frames["drive"], "Where is the red circle?")
    assert all(abs(direct.outputs[k] - got["drive"].outputs[k]) <= 1e-5 for k in direct.outputs)
    plain = FrameScheduler(Runtime.load(tiny_artifact), "Where?")
    with pytest.raises(StreamError, match="act mode needs action heads"):
        plain.add_stream("drive", act=True)


@pytest.mark.parametrize("mode", ["reset", "continuous"])
def test_the_loop_acts_through_real_heads(head_artifact, mode):
    """The act policy of the closed loop through Stream.act on an exported artifact with heads: ticks run, the
    episode repeats exactly at a fixed latency (the heads here are random: only the wiring is tested)."""
    from edge.sim import ActPolicy, LoopSettings, WorldConfig, run_episode, stream_act_fn
    from edge.sim.examples import HEAD_PROMPT

    rt = Runtime.load(head_artifact, threads=1)
    settings = LoopSettings(latency_ms=100.0, world=WorldConfig(timeout=0.5))
    runs = []
    for name in ("a", "b"):
        stream = rt.open_stream(f"{name}-{mode}", mode=mode)
        runs.append(run_episode(ActPolicy(stream_act_fn(stream), HEAD_PROMPT, reset=stream.reset), 3, settings))
    assert runs[0].ticks == 5 and runs[0].simulated() == runs[1].simulated()


def test_manifest_image_tokens_must_agree_with_positions_and_shape(head_artifact, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(head_artifact, bad)
    raw = json.loads((bad / "manifest.json").read_text())
    spot = raw["heads"]["list"][2]
    T = spot["image_tokens"]
    for tokens, match in ((0, "'image' position needs image_tokens > 0"),
                          (T - 1, rf"inputs.hidden must be .*{T}.* \({T} hidden vectors at \['image', 'last'\]\)")):
        spot["image_tokens"] = tokens
        (bad / "manifest.json").write_text(json.dumps(raw))
        with pytest.raises(ManifestError, match=match):
            Runtime.load(bad)


def test_continuous_hidden_states_for_training_equal_the_runtimes_continuous_act(head_artifact, tiny_model, heads):
    """Heads for continuous streams train on export/train_heads.py's hidden_states_continuous: frame after frame
    from the state the previous one left. Through those hidden states the PyTorch heads must give what a
    continuous stream's act gives on the same frames, frame by frame (two episodes of different lengths in one
    batch)."""
    from edge.sim.examples import approach
    from export.train_heads import at_positions, hidden_states_continuous

    rt = Runtime.load(head_artifact)
    episodes = [approach(3, 0)[:4], approach(3, 1)[:2]]
    hidden = hidden_states_continuous(tiny_model, rt.tokenizer, episodes)
    with torch.no_grad():
        want = {h.cfg.name: h(at_positions(h.cfg, hidden)) for h in heads}
    row = 0
    for k, episode in enumerate(episodes):
        s = rt.open_stream(f"cont{k}", mode="continuous")
        for example in episode:
            got = s.act(example.frame, example.prompt).outputs
            for h in heads:
                for c, o in enumerate(h.cfg.outputs):
                    assert abs(got[o.name] - float(want[h.cfg.name][row, c])) <= FP32_TOL, (k, row, o.name)
            row += 1
    assert row == hidden["image"].shape[0] == 6


def test_train_heads_quick_writes_heads_that_export_and_act(tmp_path, capsys):
    """`cobra-edge train --heads --quick`: reset views and continuous episodes, a few steps; the file loads with
    its record, exports with the embedded model and acts in both stream modes."""
    from edge.cli import main

    out = tmp_path / "h.safetensors"
    assert main(["train", "--heads", "--quick", "--wide-episodes", "1", "--overshoot-episodes", "1",
                 "--approach-ticks", "20", "60", "--near-weight", "4", "--head-dropout", "0.05",
                 "--head-hidden", "24", "12", "--lr", "0.002",
                 "--out", str(out)]) == 0
    loaded, record = load_heads(out)
    assert [h.cfg.name for h in loaded] == ["target", "path"]
    assert loaded[0].cfg.positions == loaded[1].cfg.positions == ("image", "last")
    assert loaded[0].cfg.hidden == loaded[1].cfg.hidden == (24, 12)
    assert record["data"]["views"] == 64 and record["data"]["continuous"]["episodes"] == 2
    assert record["data"]["continuous"]["wide_episodes"] == record["data"]["continuous"]["overshoot_episodes"] == 1
    assert record["data"]["continuous"]["tick_ms"] == [20.0, 60.0] and record["dropout"] == 0.05
    assert record["lr"] == 0.002 and set(record["constant_loss"]) == {"target", "path"}
    assert record["data"]["continuous"]["near_weight"] == 4 and record["data"]["continuous"]["near_frames"] >= 1
    assert record["examples"] == 64 + record["data"]["continuous"]["frames"] > 64
    assert main(["export", "--trained", "--heads", str(out), "--out", str(tmp_path / "art")]) == 0
    rt = Runtime.load(tmp_path / "art")
    item = make_item("position", (11, 0, 0))
    for mode in ("reset", "continuous"):
        got = rt.open_stream(mode, mode=mode).act(item.frames()[0], "Where is the red circle?").outputs
        assert set(got) == {"bearing", "distance", "visible", "blocked"} and -1 <= got["bearing"] <= 1
    capsys.readouterr()


def test_wide_approaches_keep_the_target_further_to_the_side():
    """--wide-episodes: approaches steered off by up to WIDE_BIAS see the target further from the centre than the
    plain approaches do (what continuous heads must learn besides "ahead")."""
    import numpy as np

    from edge.sim.examples import approach
    from export.train_heads import WIDE_BIAS, WIDE_INDEX, WIDE_NOISE

    def spread(episodes):
        return float(np.mean([abs(e.truth["bearing"]) for ep in episodes for e in ep if e.truth["visible"] > 0.5]))

    plain = spread([approach(0, i) for i in range(4)])
    wide = spread([approach(0, WIDE_INDEX + i, bias=WIDE_BIAS, noise=WIDE_NOISE) for i in range(4)])
    assert wide > 1.5 * plain, (plain, wide)


def test_overshooting_approaches_drive_past_the_stop():
    """--overshoot-episodes: an approach that never stops has the frames a plain one ends before: the target
    blocking the way closer than the controller's stop gap."""
    from edge.sim.examples import approach
    from edge.sim.policies import Controller

    for i in range(3):
        plain, over = approach(0, i), approach(0, i, overshoot=True)
        assert sum(e.truth["blocked"] > 0.5 for e in plain) <= 1
        assert sum(e.truth["blocked"] > 0.5 for e in over) >= 3
        assert min(e.truth["distance"] for e in over) < Controller().stop_gap < min(e.truth["distance"]
                                                                                     for e in plain) + 0.05


def test_approaches_at_a_slower_tick_see_frames_further_apart():
    """--approach-ticks: an approach driven at 60 ms ticks has about a third of the 20 ms approach's frames, each
    kind and tick in worlds of its own (approach_index), the plain 20 ms indices unchanged."""
    from edge.sim.examples import approach
    from export.train_heads import OVERSHOOT_INDEX, WIDE_INDEX, approach_index

    fast, slow = approach(0, 3), approach(0, 3, tick_ms=60)
    assert fast[0].prompt == slow[0].prompt and 2 <= len(fast) / len(slow) <= 4.5, (len(fast), len(slow))
    assert approach_index(0, 20, 5) == 5 and approach_index(OVERSHOOT_INDEX, 20, 5) == OVERSHOOT_INDEX + 5
    indices = {approach_index(first, tick, i) for first in (0, WIDE_INDEX, OVERSHOOT_INDEX)
               for tick in (20, 30, 40, 60, 80, 99) for i in range(500)}
    assert len(indices) == 3 * 6 * 500


def test_fit_heads_draws_weighted_examples_more_often():
    """fit_heads(weights=...): an example weighted 0 is never fitted (its target stays unlearnt), and weights of
    the wrong shape or all zero are a clear error."""
    from export.train_heads import fit_heads, target_heads

    n, d = 64, 8
    g = torch.Generator().manual_seed(0)
    hidden = {"image": torch.randn(n, 4, d, generator=g), "last": torch.randn(n, 1, d, generator=g)}
    hidden["image_end"] = hidden["image"][:, -1:]
    truths = [{"bearing": 0.9 if i < n // 2 else -0.9, "distance": 1.0, "visible": 1.0, "blocked": 0.0}
              for i in range(n)]
    hidden["last"][: n // 2] += 3.0  # the two halves are easy to tell apart
    weights = torch.tensor([1.0] * (n // 2) + [0.0] * (n // 2))
    heads, _ = fit_heads(hidden, truths, target_heads(d, 4), steps=300, dropout=0.0, weights=weights,
                         say=lambda m: None)
    with torch.no_grad():
        bearing = heads[0](torch.cat([hidden["image"], hidden["last"]], dim=1))[:, 0]
    assert float(bearing[: n // 2].mean()) > 0.7  # fitted
    assert float(bearing[n // 2:].mean()) > 0.0  # never drawn: not pulled to -0.9
    for bad in (torch.ones(n - 1), torch.zeros(n)):
        with pytest.raises(ValueError, match="weights"):
            fit_heads(hidden, truths, target_heads(d, 4), steps=1, weights=bad, say=lambda m: None)


@pytest.mark.parametrize("kw, match", [({"ticks": (20, 0)}, "ticks"), ({"ticks": (20, 20)}, "ticks"),
                                       ({"near_weight": 0}, "near_weight"), ({"dropout": 1.0}, "dropout")])
def test_train_heads_file_rejects_bad_options_before_work(tmp_path, kw, match):
    from export.train_heads import train_heads_file

    with pytest.raises(ValueError, match=match):
        train_heads_file(None, str(tmp_path / "h.safetensors"), views=1, episodes=0, **kw)
    assert not (tmp_path / "h.safetensors").exists()


def test_fit_heads_names_a_head_that_did_not_fit():
    """A head whose loss stays at a constant's (here: inputs that carry nothing about the values) is named in the
    record's not_fitted and in a warning, not passed off as trained."""
    from export.train_heads import fit_heads, target_heads

    n, d = 128, 8
    g = torch.Generator().manual_seed(1)
    hidden = {"image": torch.zeros(n, 4, d), "last": torch.zeros(n, 1, d)}
    hidden["image_end"] = hidden["image"][:, -1:]
    truths = [{"bearing": float(b), "distance": 2.0, "visible": 1.0, "blocked": float(b > 0)}
              for b in torch.rand(n, generator=g) * 2 - 1]
    said = []
    _, record = fit_heads(hidden, truths, target_heads(d, 4), steps=50, dropout=0.0, say=said.append)
    assert record["not_fitted"] == ["target", "path"] and sum("did not fit" in m for m in said) == 2
