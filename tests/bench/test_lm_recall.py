"""bench/lm_recall.py: the held-out measure reads a trained model's answers (and a random one's as noise), the colour
family's answers are all accounted for by shape count, the oracle's cell features have the labels' width, a short
run repeats exactly, and step_loss given the encoders' own tokens is the loss without them."""

import pytest

torch = pytest.importorskip("torch")


def _embedded():
    from export.tokenizer import prompt_tokenizer
    from export.weights import EMBEDDED, load_trained

    model, tokenizer_json, _ = load_trained(EMBEDDED)
    return model, prompt_tokenizer(tokenizer_json, model.cfg)


def test_held_out_reads_the_trained_model_and_counts_every_colour_answer():
    from bench.lm_recall import held_out
    from export.model import build_random

    model, tok = _embedded()
    got = held_out(model, tok, None, per=6)
    assert got["accuracy"]["path"] >= 0.75 and got["accuracy"]["count"] >= 0.6  # 97.6 / 85.6 % on 500 each
    assert sum(sum(v.values()) for v in got["colour_by_shapes"].values()) == 6
    assert got["colour_by_shapes"]["1"].get("right", 0) >= 1
    noise = held_out(build_random(model.cfg), tok, None, per=6)["accuracy"]
    assert sum(noise.values()) < sum(got["accuracy"].values()) - 1.0


def test_oracle_features_and_a_short_run_repeat():
    from bench.lm_recall import GRID, cell_features, run
    from edge.world import training_scene
    from edge.world.dense import cell_labels
    import numpy as np

    scenes = [training_scene(np.random.default_rng(i), 1)[0] for i in range(3)]
    x = cell_features([cell_labels(s, GRID) for s in scenes])
    assert x.shape == (3, GRID * GRID, 4 * 21) and float(x[:, :, :21].amax(1).sum()) >= 3  # every scene has a pair
    a, b = (run("oracle", steps=2, weights=None, per=1, seed=0, eval_every=1, say=lambda _m: None) for _ in range(2))
    assert [c["loss"] for c in a["curve"]] == [c["loss"] for c in b["curve"]] and a["final"]["step"] == 2


def test_step_loss_with_the_encoders_own_tokens_is_the_plain_loss():
    from export.train_loss import step_loss
    from export.train_data import DataRecipe, draw_batch

    model, tok = _embedded()
    batch = draw_batch(DataRecipe(scenes=3, questions=2, sequences=0), seed=2, step=0, motion=False)
    with torch.no_grad():
        plain, _ = step_loss(model, tok, batch, 1.0)
        own, _ = step_loss(model, tok, batch, 1.0, tokens=model.visual_embeds(torch.from_numpy(batch.pixels)))
        other, _ = step_loss(model, tok, batch, 1.0, tokens=torch.zeros(3, 16, model.cfg.lm.d_model))
    assert abs(float(plain - own)) < 1e-5 and abs(float(plain - other)) > 1e-3
