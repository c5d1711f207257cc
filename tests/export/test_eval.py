"""The committed trained weights through the runtime: they load, export and reach the issue's floors on a reduced
held-out set (a floor the committed weights do not reach is an expected failure that names its measured value:
see docs/evaluation.md); runtime and PyTorch reference agree; answers are identical batched and one by one,
through the scheduler and directly."""

import pytest

torch = pytest.importorskip("torch")

from edge.evaluate import agreement, evaluate  # noqa: E402
from edge.runtime import Runtime  # noqa: E402
from edge.world import eval_items  # noqa: E402
from export.evaluate import EVAL_SEED, EvalOptions, run_eval  # noqa: E402

FLOORS = ("fp32 colour", "fp32 position", "fp32 presence", "fp32 path", "fp32 count", "fp32 motion (continuous)",
          "fp32 runtime = PyTorch reference", "fp32 motion (reset) <= chance + 10 points",
          # the embedded action heads on held-out camera views (edge/sim/head_eval.py HEAD_BOUNDS)
          "fp32 head bearing_mae", "fp32 head distance_mae_m", "fp32 head visible_accuracy",
          "fp32 head blocked_accuracy", "fp32 head values = PyTorch reference",
          # the same through continuous streams, whole held-out episodes (edge/sim/examples.py approach)
          "fp32 head bearing_mae (continuous)", "fp32 head distance_mae_m (continuous)",
          "fp32 head visible_accuracy (continuous)", "fp32 head blocked_accuracy (continuous)",
          "fp32 head values = PyTorch reference (continuous)")
# floors the committed weights do not reach on the full held-out set (500 per family, bench/results), with the
# value measured there: expected failures here, so that reaching one shows up (strict xfail)
NOT_REACHED = {  # bench/results/eval-tiny-ldp-96-20261202-154411.json (the curriculum, export/train_recipe.py)
    "fp32 motion (continuous)": "80.8 % of 500, chance 20 % (floor 85 %)",
}
# Every other floor is held exactly on the first 60 items per family: the fifteen-stage weights give position and
# presence 95.0 % there, 57 of 60, on the floor (97.4 and 98.0 % of 500), count 98.3 % (98.0 % of 500);
# docs/evaluation.md


@pytest.fixture(scope="module")
def trained(trained_artifact):
    return trained_artifact


@pytest.fixture(scope="module")
def reduced_eval(trained, tmp_path_factory):
    """60 held-out questions per family (seed never used in training), fp32, both modes, reference beside; the
    action heads on 120 held-out camera views and two held-out episodes through continuous streams (one of them
    driving on past the stop)."""
    opts = EvalOptions(precisions=("fp32",), modes=("continuous", "reset"), per_family=60, batch=8, head_views=120)
    doc, path = run_eval(trained, opts, tmp_path_factory.mktemp("results"), say=print)
    assert path.is_file() and path.with_suffix(".md").is_file()
    print(path.with_suffix(".md").read_text())
    return {f["floor"]: f for f in doc["floors"]}


@pytest.mark.slow
@pytest.mark.parametrize("floor", [pytest.param(f, marks=pytest.mark.xfail(strict=True, reason=NOT_REACHED[f]))
                                   if f in NOT_REACHED else f for f in FLOORS])
def test_committed_weights_floor(reduced_eval, floor):
    assert set(reduced_eval) == set(FLOORS)
    f = reduced_eval[floor]
    assert f["ok"], f"{floor}: {f['value']:.3f}, required {f['required']}"


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_batched_scheduled_and_one_by_one_answers_are_identical(trained, precision):
    """int8 too: its activations are quantized per row, so a stream's answer never depends on its batch (with one
    scale per tensor, 10.8 % of 120 answers changed between batch 1 and batch 8)."""
    items = eval_items(EVAL_SEED + 1, per_family=6)
    rt = Runtime.load(trained, max_streams=8, precision=precision)
    one = evaluate(rt, items, "continuous", batch=1, path="direct")
    batched = evaluate(rt, items, "continuous", batch=8, path="direct")
    scheduled = evaluate(rt, items, "continuous", batch=5, path="scheduler")
    assert not one.errors and not batched.errors and not scheduled.errors
    assert one.answers == batched.answers == scheduled.answers
    assert agreement(one.answers, scheduled.answers) == {"last": 1.0, "every_frame": 1.0}


def test_precision_variants_keep_the_answers(trained):
    """fp16 and int8 against fp32 on the same items (the full run in bench/results has 500 per family)."""
    items = eval_items(EVAL_SEED + 2, per_family=20)
    answers = {p: evaluate(Runtime.load(trained, precision=p, max_streams=8), items, "continuous", batch=8).answers
               for p in ("fp32", "fp16", "int8")}
    same = {p: agreement(answers["fp32"], answers[p])["last"] for p in ("fp16", "int8")}
    print(same)
    # full run (3000 questions per mode): int8 99.2 / 99.1 % since its activations are quantized per row (94.8 / 95.2 %
    # with one scale per tensor), fp16 100 / 99.9 %
    assert same["fp16"] >= 0.99 and same["int8"] >= 0.97
