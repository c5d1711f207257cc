"""The device-state path (edge/device_state.py, edge/batch_state.py, engines/memory.py, OrtLoop with OrtValue state)
on the CPU provider with CPU OrtValues: the code a GPU provider runs, with memmove where the GPU has cuMemcpy. It
must answer exactly as the host path (same tokens, same states), keep the state out of numpy between the pool, the
prefill and the decode steps, and keep the pool's guarantees (non-finite states refused, forks, snapshots)."""

import numpy as np
import onnxruntime as ort
import pytest

from edge.batch import Request
from edge.device_state import DeviceStatePool
from edge.errors import NonFiniteError
from edge.runtime import Runtime
from engines.memory import DeviceMemory
from engines.onnxruntime_backend import OrtLoop


@pytest.fixture(scope="module", params=["prefill", "step"], ids=["decode-prefill", "decode-step"])
def runtimes(tiny_artifact, request):
    """(host path, device path) runtimes decoding with the prefill graph at L = 1 (the default: its fused
    CausalConv) or with the step graph (ConvStep, SelectiveStep)."""
    host = Runtime.load(tiny_artifact, max_streams=4, threads=1, decode=request.param)
    dev = Runtime.load(tiny_artifact, max_streams=4, threads=1, device_state=True, decode=request.param)
    assert host.decode == dev.decode == request.param
    assert ("step" in dev.engines) == (request.param == "step")
    return host, dev


def test_the_default_decode_is_the_prefill_graph(tiny_artifact):
    """The device path is tested with both decode modes below; the default one is the prefill graph at L = 1."""
    assert Runtime.load(tiny_artifact, max_streams=1, threads=1, device_state=True).decode == "prefill"


def _frames(n, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (64 + 8 * i, 80, 3), dtype=np.uint8) for i in range(n)]


def _ask_all(rt, frames, modes, max_new):
    streams = [rt.open_stream(f"s{i}", mode=m) for i, m in enumerate(modes)]
    try:
        out = []
        for round_ in range(2):  # the second round starts continuous streams from their slots
            results = rt.answer([Request(s, f, "What is in the image?", k) for s, f, k in zip(streams, frames, max_new)])
            out.append([r.token_ids if not isinstance(r, Exception) else r for r in results])
        states = [rt.pool.read(s.slot) for s in streams]
        return out, [(np.array(c), np.array(h)) for c, h in states]
    finally:
        for s in streams:
            s.close()


def test_device_pool_holds_ortvalues(runtimes):
    _, dev = runtimes
    assert isinstance(dev.pool, DeviceStatePool) and dev.pool.on_device
    assert isinstance(dev.pool.conv, ort.OrtValue) and dev.pool.conv.device_name().lower() == "cpu"
    assert dev.pool.conv.shape() == [4, *dev.manifest.state.conv_shape]


def test_device_state_answers_as_the_host_path(runtimes):
    """A batch of four streams (two continuous, two reset) whose rows leave the decode at different steps, twice:
    the same tokens and bit-identical states."""
    host, dev = runtimes
    frames = _frames(4)
    modes, max_new = ["continuous", "reset", "continuous", "reset"], [1, 5, 3, 7]
    want, want_states = _ask_all(host, frames, modes, max_new)
    got, got_states = _ask_all(dev, frames, modes, max_new)
    assert got == want
    assert all(not isinstance(t, Exception) for rnd in got for t in rnd)
    for (c, h), (wc, wh) in zip(got_states, want_states):
        assert np.array_equal(c, wc) and np.array_equal(h, wh)
    assert any(np.abs(h).sum() > 0 for _, h in got_states)


def test_no_state_passes_through_numpy(runtimes, monkeypatch):
    """Between the pool, the prefill and every decode step the state stays in OrtValues: the host copies
    (to_host, the loop's carried(), the prefill's numpy run) are never called for an answer."""
    _, dev = runtimes

    def refuse(*a, **k):
        raise AssertionError("the state went through numpy")

    monkeypatch.setattr(DeviceMemory, "to_host", refuse)
    monkeypatch.setattr(OrtLoop, "carried", refuse)
    monkeypatch.setattr(dev.engines["prefill"], "run", refuse)
    s = dev.open_stream("cam", mode="continuous")
    try:
        for frame in _frames(2, seed=3):
            answer = s.ask(frame, "What is in the image?", max_new_tokens=4)
            assert answer.token_ids is not None
    finally:
        s.close()


def test_nonfinite_state_on_the_device_fails_the_stream_and_is_zeroed(runtimes):
    _, dev = runtimes
    s = dev.open_stream("bad", mode="continuous")
    try:
        conv, ssm = dev.pool.read(s.slot)
        ssm = ssm.copy()
        ssm[0, 0, 0] = np.nan
        dev.pool.write(s.slot, conv, ssm)
        assert not dev.pool.slot_finite(s.slot)
        with pytest.raises(NonFiniteError, match="held NaN or infinity"):
            s.ask(_frames(1)[0], "What is in the image?", max_new_tokens=2)
        assert dev.pool.slot_finite(s.slot) and not np.abs(dev.pool.read(s.slot)[1]).any()
    finally:
        s.close()


def test_forks_and_snapshots_on_the_device_pool(runtimes):
    """ask_many (a fork: snapshot, then prompts from copies of it) answers as on the host pool; a snapshot restores."""
    host, dev = runtimes
    frame = _frames(1, seed=7)[0]
    prompts = ["What is in the image?", "Is the path clear?"]
    answers = {}
    for rt in runtimes:
        s = rt.open_stream("fork")
        try:
            answers[rt is dev] = [a.token_ids for a in s.ask_many(frame, prompts, max_new_tokens=3)]
            snap = s.snapshot()
            s.reset()
            s.restore(snap)
            assert np.array_equal(rt.pool.read(s.slot)[1], snap.ssm)
        finally:
            s.close()
    assert answers[True] == answers[False]


def test_cli_on_cuda_names_onnxruntime_gpu(tiny_artifact, capsys):
    from edge.cli import main

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has the CUDA provider")
    assert main(["run", str(tiny_artifact), "--synthetic", "--frames", "1", "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "cobra-edge run: error:" in err and "install onnxruntime-gpu" in err
