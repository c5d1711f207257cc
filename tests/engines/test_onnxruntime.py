"""The ONNX Runtime engine: loads by name, validates feeds with errors that name the tensor."""

import numpy as np
import pytest

from engines import BackendUnavailable, EngineError, EngineInputError, TensorSpec, load_engine, validate_feeds


@pytest.fixture(scope="module")
def step_engine(tiny_artifact):
    return load_engine("onnxruntime", tiny_artifact / "step.onnx", name="step", threads=1)


def _feeds(engine, b=1):
    spec = engine.inputs
    conv = np.zeros((b, *spec["conv_state"].shape[1:]), np.float32)
    ssm = np.zeros((b, *spec["ssm_state"].shape[1:]), np.float32)
    return {"input_ids": np.zeros(b, np.int64), "conv_state": conv, "ssm_state": ssm}


def test_declared_specs(step_engine):
    assert set(step_engine.inputs) == {"input_ids", "conv_state", "ssm_state"}
    assert set(step_engine.outputs) == {"logits", "next_token", "conv_state_out", "ssm_state_out"}
    assert step_engine.inputs["input_ids"].dtype == "int64"
    assert isinstance(step_engine.inputs["conv_state"].shape[0], str)  # dynamic B
    out = step_engine.run(_feeds(step_engine, b=3))
    assert out["logits"].shape[0] == 3 and out["ssm_state_out"].dtype == np.float32


@pytest.mark.parametrize("mutate, message", [
    (lambda f: f.pop("ssm_state"), r"missing input\(s\) \['ssm_state'\]"),
    (lambda f: f.update(extra=np.zeros(1)), r"unknown input\(s\) \['extra'\]"),
    (lambda f: f.update(input_ids=f["input_ids"].astype(np.int32)), r"input 'input_ids': expected int64\[B\], got int32\[1\] \(wrong dtype\)"),
    (lambda f: f.update(conv_state=f["conv_state"][..., :2]), r"input 'conv_state': expected float32\[B, 4, 128, 3\], got float32\[1, 4, 128, 2\] \(axis 3\)"),
    (lambda f: f.update(ssm_state=f["ssm_state"][0]), r"input 'ssm_state'.*wrong rank"),
    (lambda f: f.update(input_ids=np.zeros(2, np.int64)), r"B = 1 here but 2 in 'input_ids'"),
    (lambda f: f.update(input_ids=[0]), r"expected a numpy array"),
])
def test_bad_feeds_name_the_tensor(step_engine, mutate, message):
    feeds = _feeds(step_engine)
    mutate(feeds)
    with pytest.raises(EngineInputError, match=message) as e:
        step_engine.run(feeds)
    assert "graph 'step'" in str(e.value)


def test_empty_dynamic_axis_is_refused():
    spec = {"x": TensorSpec("x", "float32", ("B", 4))}
    with pytest.raises(EngineInputError, match="axis 0 \\(B\\) is empty"):
        validate_feeds("g", spec, {"x": np.zeros((0, 4), np.float32)})


def test_unknown_backend_lists_available(tiny_artifact):
    with pytest.raises(BackendUnavailable, match="unknown backend 'tensorrt-x'; available: onnxruntime"):
        load_engine("tensorrt-x", tiny_artifact / "step.onnx")


def test_unknown_provider_is_clear(tiny_artifact):
    with pytest.raises(EngineError, match="lacks provider"):
        load_engine("onnxruntime", tiny_artifact / "step.onnx", providers=["NoSuchExecutionProvider"])


def test_unloadable_file_names_the_file(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(EngineError, match="broken.onnx"):
        load_engine("onnxruntime", bad)


def test_spec_matching():
    a = TensorSpec("x", "float32", ("B", 4))
    assert a.matches(TensorSpec("x", "float32", ("batch", 4)))
    assert not a.matches(TensorSpec("x", "float32", ("B", 5)))
    assert not a.matches(TensorSpec("x", "float16", ("B", 4)))
    assert not a.matches(TensorSpec("x", "float32", (1, 4)))


def test_missing_backend_package_names_what_to_install(tiny_artifact):
    """With onnxruntime unimportable, choosing it is a clear error naming the package (checked in a subprocess)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'onnxruntime' or name.startswith('onnxruntime.'):\n"
        "            raise ImportError('onnxruntime is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from engines import load_engine, BackendUnavailable\n"
        "try:\n"
        f"    load_engine('onnxruntime', {str(tiny_artifact / 'step.onnx')!r})\n"
        "except BackendUnavailable as e:\n"
        "    print('refused:', e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "refused: backend 'onnxruntime' needs onnxruntime" in r.stdout, r.stderr


def test_shared_and_private_arenas_give_the_same_answers(tiny_artifact, step_engine):
    """Engines take memory from one arena shared by the process (the default) or their own; same numbers, and the
    shared one is registered once however many engines ask for it."""
    private = load_engine("onnxruntime", tiny_artifact / "step.onnx", name="step", threads=1, shared_arena=False)
    again = load_engine("onnxruntime", tiny_artifact / "step.onnx", name="step", threads=1)
    feeds = _feeds(step_engine, b=2)
    want = step_engine.run(feeds)
    for engine in (private, again):
        got = engine.run(feeds)
        assert all(np.array_equal(got[k], want[k]) for k in want)
