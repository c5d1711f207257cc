"""Training on the synthetic world: the training scan equals the reference scan (values and gradients), a
--quick run writes a checkpoint that loads strictly and exports, and bad checkpoints are clear errors."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export.checkpoints import CheckpointError  # noqa: E402
from export.scan import scan_ref, scan_train  # noqa: E402


def test_training_scan_equals_the_reference_with_gradients():
    g = torch.Generator().manual_seed(0)
    b, l, d, n = 2, 37, 12, 5
    x, dt, B, C = (torch.randn(b, l, k, generator=g, requires_grad=True) for k in (d, d, n, n))
    A = -torch.rand(d, n, generator=g) * 4
    h0 = torch.randn(b, d, n, generator=g)
    outs = {}
    for name, scan in (("ref", scan_ref), ("train", scan_train)):
        y, h = scan(x, torch.nn.functional.softplus(dt), A, B, C, h0)
        grads = torch.autograd.grad((y.square().sum() + h.sum()), (x, dt, B, C))
        outs[name] = (y, h, *grads)
    for ref, got in zip(outs["ref"], outs["train"]):
        err = float((ref - got).abs().max())
        print(f"max abs err {err:.2e}")
        assert err <= 1e-5 * max(1.0, float(ref.abs().max()))


@pytest.fixture(scope="module")
def quick_checkpoint(tmp_path_factory):
    from export.train import TrainOptions, train

    out = tmp_path_factory.mktemp("train") / "tiny.safetensors"
    result = train(TrainOptions.quick(), out, say=lambda m: None)
    return out, result


def test_quick_training_writes_a_checkpoint_with_its_record(quick_checkpoint):
    out, result = quick_checkpoint
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["steps"] == 3 and record["seed"] == 0 and record["preset"] == "tiny-ldp-96"  # the default recipe's
    assert record["weights"]["sha256"] and record["weights"]["bytes"] == out.stat().st_size
    assert len(record["curve"]["loss"]) == 3 and all(np.isfinite(record["curve"]["loss"]))
    assert set(record["validation"]["accuracy"]) == {"colour", "position", "count", "presence", "path", "motion"}
    assert record["data_recipe"]["scenes"] == 4 and record["machine"]["load_average_before"] is not None


def test_checkpoint_round_trips_and_exports(quick_checkpoint, tmp_path):
    from edge.manifest import Manifest
    from edge.runtime import Runtime
    from export.cli import export_trained
    from export.weights import load_trained

    out, result = quick_checkpoint
    model, tokenizer_json, record = load_trained(out)
    for (k, a), (_, b) in zip(model.state_dict().items(), result.model.state_dict().items()):
        assert torch.equal(a, b), k
    assert tokenizer_json == result.tokenizer_json and record["steps"] == 3
    art = export_trained(tmp_path / "art", out, show_progress=False).out_dir
    weights = Manifest.load(art).raw["weights_source"]
    assert weights["source"] == "checkpoint" and weights["path"] == str(out.resolve())
    assert weights["record"]["steps"] == 3 and "curve" not in weights["record"]
    answer = Runtime.load(art).open_stream("s").ask(np.zeros((60, 80, 3), np.uint8), "Is the path clear?", 3)
    assert len(answer.token_ids) <= 3


def test_dense_supervision_and_vision_pretraining_run_and_learn(tmp_path):
    """--dense-weight / --pretrain-steps: pretraining lowers the dense loss on held-out scenes, the record keeps its
    held-out metrics, and the QA run with dense and motion labels writes a checkpoint."""
    from export.train import TrainOptions, train
    from export.train_dense import DenseHead, dense_grid, pretrain_vision
    from export.config import preset
    from export.model import build_random
    from export.train_data import DataRecipe, draw_batch

    torch.manual_seed(0)
    model = build_random(preset("tiny-ldp-96"))
    grid = dense_grid(model)
    assert grid == 4 and dense_grid(build_random(preset("tiny-mg"))) == 0  # object tokens: no grid
    dense = DenseHead(96, 21, 5)
    fixed = draw_batch(DataRecipe(scenes=16, questions=1, sequences=0, dense_grid=grid), seed=5, step=0)

    def held_out_loss():
        with torch.no_grad():
            return float(dense.loss(model.visual_embeds(torch.from_numpy(fixed.pixels)), fixed.dense))

    before = held_out_loss()
    record = pretrain_vision(model, dense, grid, steps=25, scenes=8, lr=3e-3, warmup=1, workers=False,
                             log_every=5, say=lambda m: None)
    assert held_out_loss() < 0.8 * before, (before, held_out_loss())
    assert set(record["after"]) >= {"colour_of_kind", "pairs_exact", "centre_cell"} and record["steps"] == 25
    out = tmp_path / "d.safetensors"
    result = train(TrainOptions.quick(dense_weight=1.0, pretrain_steps=2), out, say=lambda m: None)
    assert result.record["vision_pretraining"]["steps"] == 2 and out.exists()
    assert result.record["options"]["dense_weight"] == 1.0


def test_bad_checkpoints_are_clear_errors(tmp_path):
    from safetensors.torch import save_file

    from export.weights import load_trained

    with pytest.raises(CheckpointError, match="no such file"):
        load_trained(tmp_path / "none.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="cannot be read as safetensors"):
        load_trained(tmp_path / "junk.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a cobra-edge trained checkpoint"):
        load_trained(tmp_path / "other.safetensors")


def test_early_answer_term_reads_the_question_last_word(tmp_path):
    """--early-answer-weight: the answer's first token is also asked at the question's last word; the term adds
    exactly weight x its own cross-entropy, and a --quick run records the option."""
    from edge.world import TEMPLATES
    from edge.tokenizer import PromptTokenizer
    from export.config import preset
    from export.model import build_random
    from export.tokenizer import build_tiny_tokenizer
    from export.train import TrainOptions, train
    from export.train_loss import query_position, step_loss
    from export.train_data import DataRecipe, draw_batch

    cfg = preset("tiny-ldp-96")
    (tmp_path / "t.json").write_text(build_tiny_tokenizer(cfg.lm.vocab_size).to_str())
    tok = PromptTokenizer(tmp_path / "t.json", cfg.prompt_template, cfg.eos_token_id)
    mark = tok.encode_text("?").tolist()[-1]
    for family, template in TEMPLATES.items():
        question = template.format(colour="red", shape="triangle")
        ids = tok.encode_prompt(question).tolist()
        last_word = question.rstrip("?").split()[-1]
        assert tok.decode([ids[query_position(ids, mark)]]).strip() == last_word, family
    with pytest.raises(ValueError, match="no '\\?'"):
        query_position(tok.encode_prompt("Say yes").tolist(), mark)
    torch.manual_seed(0)
    model = build_random(cfg)
    batch = draw_batch(DataRecipe(scenes=3, questions=2, sequences=0), seed=1, step=0, motion=False)
    plain, _ = step_loss(model, tok, batch, 2.0)
    with_term, parts = step_loss(model, tok, batch, 2.0, early_answer_weight=0.5)
    assert parts["early_answer"] > 0
    assert abs(float(with_term - plain) - 0.5 * parts["early_answer"]) < 1e-4
    result = train(TrainOptions.quick(early_answer_weight=1.0), tmp_path / "e.safetensors", say=lambda m: None,
                   plot=False)
    assert result.record["options"]["early_answer_weight"] == 1.0


def test_continuing_a_checkpoint_on_a_motion_curriculum(quick_checkpoint, tmp_path):
    """--init-weights: training continues from the checkpoint's weights (not fresh ones) on batches after the ones
    it saw, its minutes count in minutes_in_all, and a motion-only curriculum (no still scenes, larger moves over
    two frames) trains; a preset that is not the checkpoint's, or pretraining on top, is a clear error."""
    from edge.world import MotionRange
    from export.train import TrainOptions, train
    from export.train_data import DataRecipe, draw_batch
    from export.weights import load_trained

    parent, parent_result = quick_checkpoint
    recipe = DataRecipe(scenes=0, questions=2, sequences=2, motion_frames=(2, 2), motion_speed=(0.2, 0.3))
    batch = draw_batch(recipe, seed=0, step=5)
    assert batch.pixels.shape[0] == 0 and all(len(p) == 2 for p in batch.seq_pixels)
    assert recipe.motion_range() == MotionRange((2, 2), (0.2, 0.3)) and DataRecipe().motion_range() is None
    # seed 1: fresh weights would be build_random's of seed 1, far from the parent's (seed 0)
    opts = TrainOptions.quick(init_weights=str(parent), seed=1, motion_from=0, steps=1, recipe=recipe)
    result = train(opts, tmp_path / "c.safetensors", say=lambda m: None, plot=False)
    rec = result.record
    assert rec["initialised_from"]["sha256"] == parent_result.record["weights"]["sha256"]
    assert rec["data_recipe"]["data_steps"] == [3, 4]  # the parent trained on steps 0..2
    assert rec["minutes_in_all"] >= parent_result.record["minutes_in_all"]
    model, _, _ = load_trained(tmp_path / "c.safetensors")
    before = dict(parent_result.model.state_dict())
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    near = [k for k, v in model.state_dict().items() if float((v - before[k]).abs().max()) < 0.05]
    assert changed and len(near) == len(before)  # one small step from the parent, not fresh weights
    grand = train(TrainOptions.quick(init_weights=str(tmp_path / "c.safetensors"), steps=1),
                  tmp_path / "g.safetensors", say=lambda m: None, plot=False)
    assert grand.record["data_recipe"]["data_steps"] == [4, 5]
    with pytest.raises(ValueError, match="'tiny-ldp-96' model; --preset is 'tiny'"):
        train(TrainOptions.quick(init_weights=str(parent), preset="tiny"), tmp_path / "x.safetensors",
              say=lambda m: None, plot=False)
    with pytest.raises(ValueError, match="no --pretrain-steps"):
        train(TrainOptions.quick(init_weights=str(parent), pretrain_steps=2), tmp_path / "y.safetensors",
              say=lambda m: None, plot=False)


def test_the_dense_head_is_saved_and_a_continuation_can_keep_it(tmp_path):
    """train writes its training-only dense head beside the weights; --keep-dense-head continues it (at lr 0 it
    comes out unchanged, its optional heads that the parent lacks start fresh); without the flag the head is
    fresh; a missing head is a clear error."""
    from safetensors.torch import load_file

    from export.train import TrainOptions, dense_head_path, train

    quiet = {"say": lambda m: None, "plot": False}
    parent = train(TrainOptions.quick(dense_weight=1.0), tmp_path / "p.safetensors", **quiet)
    head = load_file(str(dense_head_path(parent.weights)))
    assert parent.record["dense_head"] == {"kept_from": None, "file": "p.dense.safetensors"}
    assert head["proj.weight"].shape == (4 * 21, 96) and "motion.weight" in head
    still = {"init_weights": str(parent.weights), "lr": 0.0, "dense_weight": 1.0, "seed": 1}
    kept = train(TrainOptions.quick(keep_dense_head=True, motion_summary_weight=1.0, **still),
                 tmp_path / "k.safetensors", **quiet)
    assert kept.record["dense_head"]["kept_from"] == {"file": "p.dense.safetensors", "fresh": ["motion_summary"]}
    got = load_file(str(dense_head_path(kept.weights)))
    assert all(torch.equal(got[k], v) for k, v in head.items()) and "motion_summary.weight" in got
    fresh = load_file(str(dense_head_path(train(TrainOptions.quick(**still), tmp_path / "f.safetensors",
                                                **quiet).weights)))
    assert not torch.equal(fresh["proj.weight"], head["proj.weight"])
    with pytest.raises(ValueError, match="give --init-weights"):
        train(TrainOptions.quick(keep_dense_head=True), tmp_path / "n.safetensors", **quiet)
    dense_head_path(parent.weights).unlink()
    with pytest.raises(ValueError, match="p.dense.safetensors is missing"):
        train(TrainOptions.quick(keep_dense_head=True, **still), tmp_path / "m.safetensors", **quiet)


def test_staged_recipe_chains_its_checkpoints(tmp_path):
    """train_stages: every stage continues the one before (its record names the parent's sha256), the data steps
    follow on, the last stage's weights are written as the output with the stage names in its record."""
    from export.train import dense_head_path
    from export.train_recipe import CURRICULUM, train_stages
    from export.weights import sha256

    out = tmp_path / "tiny.safetensors"
    result = train_stages(CURRICULUM, out, quick=True, say=lambda m: None)
    paths = [tmp_path / f"tiny-{k}-{s.name}.safetensors" for k, s in enumerate(CURRICULUM, 1)]
    records = [json.loads(p.with_suffix(".json").read_text()) for p in paths]
    assert records[0]["initialised_from"] is None and records[0]["vision_pretraining"]["steps"] == 2
    for parent, path, rec in zip(paths, paths[1:], records[1:]):
        assert rec["initialised_from"]["sha256"] == sha256(parent)
        assert rec["data_recipe"]["data_steps"][0] == json.loads(parent.with_suffix(".json").read_text())[
            "data_recipe"]["data_steps"][1]
    assert records[1]["data_recipe"]["scenes"] == 0 and records[1]["data_recipe"]["motion_speed"] == [0.2, 0.3]
    assert sha256(out) == sha256(paths[-1]) == result.record["weights"]["sha256"]
    assert sha256(dense_head_path(out)) == sha256(dense_head_path(paths[-1]))
    assert result.record["stages"] == [s.name for s in CURRICULUM] and result.record["weights"]["file"] == out.name
    assert result.record["minutes_in_all"] >= sum(r["minutes"] for r in records)


def test_cli_train_runs_the_staged_recipe_or_one_stage(tmp_path):
    """cobra-edge train --curriculum runs the fifteen stages; without it, one stage with the options given."""
    from edge.cli import main

    assert main(["train", "--quick", "--curriculum", "--out", str(tmp_path / "a.safetensors")]) == 0
    staged = json.loads((tmp_path / "a.json").read_text())
    assert staged["stages"] == ["questions", "motion-large", "mixed", "mixed-more", "mixed-longer", "weighted",
                                 "presence", "presence-more", "wider-moves", "motion-long", "motion-longer",
                                 "motion-longer-2", "motion-longer-3", "motion-longer-4", "motion-longer-5"]
    assert staged["initialised_from"]
    # the last stage continues the dense head of the one before
    assert staged["dense_head"]["kept_from"]["file"] == "a-14-motion-longer-4.dense.safetensors"
    assert main(["train", "--quick", "--steps", "2", "--motion-speed", "0.1", "0.12",
                 "--out", str(tmp_path / "b.safetensors")]) == 0
    single = json.loads((tmp_path / "b.json").read_text())
    assert "stages" not in single and single["steps"] == 2 and single["data_recipe"]["motion_speed"] == [0.1, 0.12]
    assert main(["train", "--quick", "--curriculum", "--steps", "2", "--out", str(tmp_path / "c.safetensors")]) == 2


def test_cli_train_weighs_question_families(tmp_path, capsys):
    """--question-weights FAMILY=W reaches the data recipe and its record; a bad term or family is named."""
    from edge.cli import main

    assert main(["train", "--quick", "--steps", "1", "--question-weights", "presence=3", "path=0.5",
                 "--out", str(tmp_path / "w.safetensors")]) == 0
    record = json.loads((tmp_path / "w.json").read_text())
    assert record["data_recipe"]["question_weights"] == [1.0, 1.0, 1.0, 3.0, 0.5]
    assert main(["train", "--quick", "--question-weights", "presence", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "'presence' is not FAMILY=WEIGHT" in capsys.readouterr().err
    assert main(["train", "--quick", "--question-weights", "motion=2", "--out", str(tmp_path / "y.safetensors")]) == 2
    assert "unknown single-frame family 'motion'" in capsys.readouterr().err


def test_cli_train_weighs_motion_moves(tmp_path, capsys):
    """--motion-moves MOVE=W reaches the data recipe and its record; a bad term or move is named."""
    from edge.cli import main

    assert main(["train", "--quick", "--steps", "1", "--motion-from", "0", "--motion-moves", "up=2", "still=3",
                 "--out", str(tmp_path / "w.safetensors")]) == 0
    record = json.loads((tmp_path / "w.json").read_text())
    assert record["data_recipe"]["motion_moves"] == [1.0, 1.0, 2.0, 1.0, 3.0]
    assert main(["train", "--quick", "--motion-moves", "still", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "'still' is not MOVE=WEIGHT" in capsys.readouterr().err
    assert main(["train", "--quick", "--motion-moves", "sideways=2", "--out", str(tmp_path / "y.safetensors")]) == 2
    assert "unknown move 'sideways'" in capsys.readouterr().err


def _tiny_batch(tmp_path):
    """A random tiny-ldp-96 model, its tokenizer and a batch of 2 still scenes and 2 motion items with cell labels."""
    from export.config import preset
    from export.model import build_random
    from export.tokenizer import build_tiny_tokenizer
    from export.train_dense import dense_grid
    from export.train_data import DataRecipe, draw_batch
    from edge.tokenizer import PromptTokenizer

    cfg = preset("tiny-ldp-96")
    (tmp_path / "t.json").write_text(build_tiny_tokenizer(cfg.lm.vocab_size).to_str())
    tok = PromptTokenizer(tmp_path / "t.json", cfg.prompt_template, cfg.eos_token_id)
    torch.manual_seed(0)
    model = build_random(cfg)
    grid = dense_grid(model)
    return model, tok, draw_batch(DataRecipe(scenes=2, questions=2, sequences=2, dense_grid=grid), seed=1, step=0)


def _check_aux_term(tmp_path, model, tok, batch, head_flag: str, weight: str, part: str) -> None:
    """An optional training-only term (DenseHead(**{head_flag: True}), step_loss(**{weight: w})): its head is made
    last, so that runs without it draw the same initial weights; off by default (no part); on, it adds w x its value
    to the loss; asked for without its head it is an error naming the flag; and the option reaches the record."""
    from export.train import TrainOptions, train
    from export.train_dense import DenseHead
    from export.train_loss import step_loss

    d = model.cfg.lm.d_model
    torch.manual_seed(1)
    head = DenseHead(d, **{head_flag: True})
    torch.manual_seed(1)
    same = DenseHead(d)
    assert all(torch.equal(a, b) for a, b in zip(same.parameters(), list(head.parameters())[:-2]))
    off, parts = step_loss(model, tok, batch, 2.0, head, dense_weight=1.0)
    assert part not in parts
    on, parts = step_loss(model, tok, batch, 2.0, head, dense_weight=1.0, **{weight: 0.5})
    assert parts[part] > 0 and abs(float(on - off) - 0.5 * parts[part]) < 1e-4
    with pytest.raises(ValueError, match=f"{head_flag}=True"):
        step_loss(model, tok, batch, 2.0, DenseHead(d), dense_weight=1.0, **{weight: 1.0})
    result = train(TrainOptions.quick(**{weight: 1.0}, motion_from=0), tmp_path / f"{part}.safetensors",
                   say=lambda m: None, plot=False)
    assert result.record["options"][weight] == 1.0


def test_recall_term_reads_the_frame_before(tmp_path):
    """recall_weight: at a motion item's later frames, the LM's tokens are asked for the frame before's cell
    labels (batch.dense holds the still scenes, then every sequence's frames in order); the term behaves as
    every optional term (_check_aux_term)."""
    from edge.world.dense import cell_labels
    from edge.world import make_item
    from export.train_dense import dense_grid

    model, tok, batch = _tiny_batch(tmp_path)
    grid = dense_grid(model)
    # the layout the term indexes: sequence 1's first frame follows the scenes and all of sequence 0's frames
    item = make_item("motion", (1, 0, 2, 1))
    first = 2 + len(batch.seq_qa[0])
    assert all(np.array_equal(a, b) for a, b in zip(batch.dense[first], cell_labels(item.scenes[0], grid)))
    _check_aux_term(tmp_path, model, tok, batch, "recall", "recall_weight", "recall")


def test_motion_summary_term_reads_every_pair_at_the_last_visual_token(tmp_path):
    """motion_summary_weight: at a motion item's later frames, the hidden state at the frame's last visual token
    gives every pair's move; the labels are each pair's own move (a pair whose centre cells disagree is not
    asked); the term behaves as every optional term (_check_aux_term)."""
    from edge.world import make_item, spec
    from edge.world.dense import PAIRS, motion_labels
    from export.train_dense import pair_motions

    item = make_item("motion", (3, 5, 0))
    moves = pair_motions(motion_labels(list(item.scenes), 4)[1:])
    checked = 0
    for k, scene in enumerate(item.scenes[1:]):
        seen = {}
        for s in scene.shapes:
            seen.setdefault(PAIRS.index((s.colour, s.kind)), set()).add(spec.MOTIONS.index(s.motion))
        want = np.full(len(PAIRS), -1)
        for p, m in seen.items():
            want[p] = m.pop() if len(m) == 1 else -1
        if all(len(m) <= 1 for m in seen.values()):  # no pair shown twice with two moves (one cell keeps one)
            assert np.array_equal(moves[k], want), (k, moves[k], want)
            checked += 1
    assert checked and (moves >= 0).sum() >= len(item.scenes[-1].shapes)
    clash = np.full((1, 16, len(PAIRS)), -1)
    clash[0, 3, 0], clash[0, 7, 0], clash[0, 2, 1] = 1, 2, 4
    assert pair_motions(clash)[0, :3].tolist() == [-1, 4, -1]
    _check_aux_term(tmp_path, *_tiny_batch(tmp_path), "motion_summary", "motion_summary_weight", "motion_summary")


def test_motion_layer_reads_the_motion_labels_at_that_layers_input(tmp_path):
    """motion_layer K: the per-token motion labels are read at the input of LM layer K. So the dense terms'
    gradient reaches layer K's norm and the layers before it, and not layer K's mixer, the layers after it or the
    final norm (read at the final state, it reaches the last layer). The answers' loss is unchanged; a layer the LM
    does not have is an error naming it; the option reaches the record."""
    from export.train import TrainOptions, train
    from export.train_dense import DenseHead
    from export.train_loss import step_loss

    model, tok, batch = _tiny_batch(tmp_path)
    llm = model.llm
    torch.manual_seed(2)
    head = DenseHead(model.cfg.lm.d_model)

    def grads(dense_weight: float, motion_layer):
        model.zero_grad()
        head.zero_grad()
        loss, parts = step_loss(model, tok, batch, 2.0, head, dense_weight=dense_weight, motion_layer=motion_layer)
        loss.backward()
        return {n: p.grad.clone() for n, p in llm.named_parameters() if p.grad is not None}, parts

    base, base_parts = grads(0.0, None)
    for k in (1, 2):
        got, parts = grads(1.0, k)
        assert parts["sequence"] == base_parts["sequence"] and parts["single"] == base_parts["single"]
        changed = {n for n in base if not torch.allclose(got[n], base[n], atol=1e-7)}
        assert any(n.startswith(f"backbone.layers.{k - 1}.mixer") for n in changed), k
        assert any(n.startswith(f"backbone.layers.{k}.norm") for n in changed), k
        untouched = [n for n in changed if n.startswith("backbone.norm_f") or n.startswith(f"backbone.layers.{k}.mixer")
                     or any(n.startswith(f"backbone.layers.{j}.") for j in range(k + 1, len(llm.backbone.layers)))]
        assert not untouched, (k, untouched)
    final, parts_final = grads(1.0, None)
    last = len(llm.backbone.layers) - 1
    assert any(not torch.allclose(final[n], base[n], atol=1e-7) for n in final if n.startswith(f"backbone.layers.{last}."))
    assert parts_final["dense_motion"] != parts["dense_motion"]
    for bad in (0, len(llm.backbone.layers)):
        with pytest.raises(ValueError, match=f"motion_layer {bad}: the LM has {len(llm.backbone.layers)} layers"):
            step_loss(model, tok, batch, 2.0, head, dense_weight=1.0, motion_layer=bad)
    result = train(TrainOptions.quick(dense_weight=1.0, motion_layer=2, motion_from=0), tmp_path / "m.safetensors",
                   say=lambda m: None, plot=False)
    assert result.record["options"]["motion_layer"] == 2
