import numpy as np
import pytest

from edge.errors import StreamError
from edge.state import StatePool, StateSpec


@pytest.fixture
def spec():
    return StateSpec(n_layer=3, d_inner=8, d_conv=4, d_state=5, conv_dtype="float16")


def test_bytes_per_stream_is_the_slab(spec):
    pool = StatePool(spec, 4)
    conv, ssm = pool.view(2)
    assert spec.bytes_per_stream == conv.nbytes + ssm.nbytes == 3 * 8 * 3 * 2 + 3 * 8 * 5 * 4
    assert conv.flags["C_CONTIGUOUS"] and ssm.flags["C_CONTIGUOUS"]
    assert np.shares_memory(conv, pool.conv)  # a view into the pool, no copy


def test_allocate_release_and_exhaustion(spec):
    pool = StatePool(spec, 2)
    a, b = pool.allocate(), pool.allocate()
    assert {a, b} == {0, 1} and pool.in_use == 2
    with pytest.raises(StreamError, match="all 2 state slots are in use"):
        pool.allocate()
    pool.release(a)
    with pytest.raises(StreamError, match="already free"):
        pool.release(a)
    assert pool.allocate() == a
    with pytest.raises(StreamError, match="out of range"):
        pool.view(7)


def test_reset_snapshot_restore_touch_one_slab(spec):
    pool = StatePool(spec, 3)
    for slot in range(3):
        pool.write(slot, np.full(spec.conv_shape, slot + 1, np.float16), np.full(spec.ssm_shape, slot + 1, np.float32))
    snap = pool.snapshot(1)
    pool.reset(1)
    assert not pool.conv[1].any() and not pool.ssm[1].any()
    assert (pool.ssm[0] == 1).all() and (pool.ssm[2] == 3).all()
    pool.restore(1, snap)
    assert (pool.conv[1] == 2).all() and (pool.ssm[1] == 2).all()
    snap.ssm[...] = 9  # a snapshot is a copy
    assert (pool.ssm[1] == 2).all()


def test_ssm_must_be_float32():
    with pytest.raises(ValueError, match="ssm_state must be float32"):
        StateSpec.from_dict({"n_layer": 1, "d_inner": 2, "d_conv": 4, "d_state": 3, "ssm_dtype": "float16"})
