"""engines/memory.py on CPU OrtValues: the row moves the device state path is written over (the CUDA subclass swaps
only the four primitives), against numpy indexing."""

import numpy as np
import pytest

from engines.memory import HostMemory, _runs, memory_for


@pytest.fixture
def mem():
    return memory_for("cpu")


def test_runs_coalesce_consecutive_rows():
    assert _runs([0, 1, 2, 5], [3, 4, 5, 0]) == [(0, 3, 3), (5, 0, 1)]
    assert _runs([2, 1], [0, 1]) == [(2, 0, 1), (1, 1, 1)]


def test_rows_move_as_numpy_indexing_says(mem):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((6, 3, 4)).astype(np.float32)
    b = rng.standard_normal((4, 3, 4)).astype(np.float32)
    va, vb = mem.from_host(a), mem.from_host(b)
    assert np.array_equal(mem.to_host(va), a) and np.array_equal(mem.to_host(va, [4, 1]), a[[4, 1]])
    mem.copy_rows(va, [0, 1, 5], vb, [3, 2, 0])
    a[[0, 1, 5]] = b[[3, 2, 0]]
    assert np.array_equal(mem.to_host(va), a)
    assert np.array_equal(mem.to_host(mem.gather(va, [5, 0, 2])), a[[5, 0, 2]])
    mem.zero_rows(va, [2, 3])
    a[[2, 3]] = 0
    assert np.array_equal(mem.to_host(va), a)
    mem.write_rows(va, [4], b[1:2])
    a[4] = b[1]
    assert np.array_equal(mem.to_host(va), a)
    assert np.array_equal(mem.to_host(mem.zeros((2, 3), np.float16)), np.zeros((2, 3), np.float16))


def test_copies_are_not_views_of_the_host_array(mem):
    a = np.ones((2, 3), np.float32)
    v = mem.from_host(a)
    a[:] = 7
    assert np.array_equal(mem.to_host(v), np.ones((2, 3)))


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_rows_finite(mem, dtype):
    a = np.zeros((4, 2, 5), dtype)
    a[1, 1, 4], a[3, 0, 0] = np.nan, -np.inf
    v = mem.from_host(a)
    assert mem.rows_finite(v).tolist() == [True, False, True, False]
    assert mem.rows_finite(v, [3, 2]).tolist() == [False, True]


def test_mismatched_rows_are_refused(mem):
    with pytest.raises(ValueError, match="differ"):
        mem.copy_rows(mem.zeros((2, 3), np.float32), [0], mem.zeros((2, 4), np.float32), [0])
    with pytest.raises(ValueError, match="device 'cpu' or 'cuda'"):
        memory_for("tpu")
    assert isinstance(memory_for("cpu"), HostMemory)
