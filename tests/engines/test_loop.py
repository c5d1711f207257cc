"""The IO-bound decode loop (state kept in OrtValues between steps) against the plain numpy loop."""

import numpy as np
import pytest

from edge.decode import STATE_CARRY, greedy_decode
from engines import EngineInputError, load_engine
from engines.loop import HostLoop, open_loop
from engines.onnxruntime_backend import OrtLoop


@pytest.fixture(scope="module")
def step(tiny_artifact):
    return load_engine("onnxruntime", tiny_artifact / "step.onnx", name="step", threads=1)


def _state(step, b, seed=0):
    rng = np.random.default_rng(seed)
    conv = rng.standard_normal((b, *step.inputs["conv_state"].shape[1:])).astype(np.float32)
    ssm = rng.standard_normal((b, *step.inputs["ssm_state"].shape[1:])).astype(np.float32) * 0.1
    return {"conv_state": conv, "ssm_state": ssm}


def test_bound_loop_equals_host_loop_step_by_step(step):
    state = _state(step, 3)
    before = {k: v.copy() for k, v in state.items()}
    bound = open_loop(step, STATE_CARRY, state, fetch=("next_token", "logits"))
    host = HostLoop(step, STATE_CARRY, state, fetch=("next_token", "logits"))
    assert isinstance(bound, OrtLoop)
    tokens = np.array([1, 2, 3], np.int64)
    for i in range(6):
        if i == 3:  # the middle row leaves the batch
            bound.keep_rows([0, 2])
            host.keep_rows([0, 2])
            tokens = tokens[[0, 2]]
        a, b = bound.run({"input_ids": tokens}), host.run({"input_ids": tokens})
        np.testing.assert_array_equal(a["next_token"], b["next_token"])
        np.testing.assert_array_equal(a["next_token"], a["logits"].argmax(-1))
        np.testing.assert_allclose(a["logits"], b["logits"], rtol=0, atol=1e-6)
        tokens = a["next_token"]
    for k, v in bound.carried().items():
        err = float(np.abs(v - host.carried()[k]).max())
        print(f"{k}: max |bound - host| = {err:.2e}")
        assert v.shape[0] == 2 and err <= 1e-6
    for k, v in state.items():  # the caller's arrays are never written
        np.testing.assert_array_equal(v, before[k])


def test_bound_greedy_decode_gives_the_plain_loops_tokens_and_states(step):
    rng = np.random.default_rng(1)
    n = 5
    state = _state(step, n, seed=2)
    first = rng.integers(3, 200, n).astype(np.int64)
    max_new = [1, 7, 4, 7, 0]
    feed_last = [True, False, True, True, False]
    # an EOS that the loop meets: the token the plain loop emits third in row 3
    probe, _, _ = greedy_decode(step, first, state["conv_state"].copy(), state["ssm_state"].copy(), max_new, -1,
                                feed_last, bound=False)
    eos = probe[3][2]
    runs = {}
    for bound in (True, False):
        conv, ssm = state["conv_state"].copy(), state["ssm_state"].copy()
        runs[bound] = greedy_decode(step, first, conv, ssm, max_new, eos, feed_last, bound=bound)
    (ids_b, conv_b, ssm_b), (ids_h, conv_h, ssm_h) = runs[True], runs[False]
    assert ids_b == ids_h
    assert ids_b[4] == [] and len(ids_b[0]) == 1 and len(ids_b[3]) == 2  # max_new 0, 1 token, cut at EOS
    err = max(float(np.abs(conv_b - conv_h).max()), float(np.abs(ssm_b - ssm_h).max()))
    print(f"greedy decode, bound vs plain: tokens equal, max state error {err:.2e}")
    assert err <= 1e-6
    assert not np.array_equal(ssm_b[1], state["ssm_state"][1])  # rows that stepped changed their state
    np.testing.assert_array_equal(ssm_b[4], state["ssm_state"][4])  # a row that never stepped did not


def test_loop_errors_name_the_tensor(step):
    state = _state(step, 2)
    with pytest.raises(EngineInputError, match="cannot carry output 'nope'"):
        open_loop(step, {"nope": "conv_state"}, state, fetch=())
    with pytest.raises(EngineInputError, match="cannot fetch \\['scores'\\]"):
        open_loop(step, STATE_CARRY, state, fetch=("scores",))
    loop = open_loop(step, STATE_CARRY, state, fetch=("next_token",))
    with pytest.raises(EngineInputError, match="must have the loop's batch 2 rows"):
        loop.run({"input_ids": np.zeros(3, np.int64)})
    with pytest.raises(EngineInputError, match="input 'input_ids': expected int64"):
        loop.run({"input_ids": np.zeros(2, np.int32)})
    bad = {**state, "ssm_state": state["ssm_state"][:, :, :, :3]}
    with pytest.raises(EngineInputError, match="input 'ssm_state'"):
        open_loop(step, STATE_CARRY, bad, fetch=())
