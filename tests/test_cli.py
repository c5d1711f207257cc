"""The command line, as a user runs it: README's demo command, export, run on video, inspect."""

import os
import re
import shlex
import subprocess
import sys

import cv2
import numpy as np
import pytest

from tests.conftest import MEDIA, REPO


def _cli(*args, env=None, timeout=300):
    cmd = [sys.executable, "-m", "edge.cli", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def _readme_demo_command() -> list[str]:
    """The `cobra-edge demo ...` invocation in README's first command."""
    readme = (REPO / "README.md").read_text()
    m = re.search(r"cobra-edge demo[^\n&;|`]*", readme)
    assert m, "README must show the demo command"
    return shlex.split(m.group(0))[1:]


def test_readme_demo_command(tmp_path):
    pytest.importorskip("torch")
    args = _readme_demo_command()
    r = _cli(*args, env={"COBRA_EDGE_CACHE": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "summary:" in out and "state bytes per stream:" in out
    assert re.search(r"^cam0\s+0\s", out, re.M) and re.search(r"^cam1\s+0\s", out, re.M)
    for stage in ("preprocess", "vision", "projector", "prefill", "decode", "total"):
        assert re.search(rf"^{stage}\s+[\d.]+\s+[\d.]+", out, re.M), stage
    # second run reuses the cached export
    r2 = _cli(*args, "--frames", "1", env={"COBRA_EDGE_CACHE": str(tmp_path)})
    assert r2.returncode == 0 and "using the tiny model exported" in r2.stdout


def test_run_on_a_video_file(tiny_artifact, tmp_path):
    path = str(tmp_path / "clip.avi")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for i in range(3):
        writer.write(np.full((120, 160, 3), 40 * i, np.uint8))
    writer.release()
    r = _cli("run", str(tiny_artifact), "--video", path, "--streams", "2", "--frames", "2", "--max-new-tokens", "3")
    assert r.returncode == 0, r.stderr
    assert "summary: 4 frames answered on 2 streams, 0 errors" in r.stdout


def test_run_on_real_h264(tiny_artifact):
    clip = MEDIA / "big-buck-bunny-480p-30s.mp4"
    if not clip.exists():
        pytest.skip(f"{clip} not found (shared media lives beside the repository)")
    r = _cli("run", str(tiny_artifact), "--video", str(clip), "--streams", "1", "--frames", "3", "--max-new-tokens", "2")
    assert r.returncode == 0, r.stderr
    assert "summary: 3 frames answered on 1 streams" in r.stdout


def test_run_missing_video_is_a_clear_error(tiny_artifact, tmp_path):
    r = _cli("run", str(tiny_artifact), "--video", str(tmp_path / "none.mp4"))
    assert r.returncode == 2 and "cannot open video source" in r.stderr and "none.mp4" in r.stderr


def test_inspect(tiny_artifact):
    r = _cli("inspect", str(tiny_artifact))
    assert r.returncode == 0, r.stderr
    assert "38,912 bytes per stream" in r.stdout and "64 visual tokens" in r.stdout
    assert re.search(r"prefill\s+logits \d\.\d\de-\d\d", r.stdout)


def test_run_on_tampered_artifact_fails_clearly(artifact_copy):
    with open(artifact_copy / "prefill.onnx", "ab") as f:
        f.write(b"x")
    r = _cli("run", str(artifact_copy), "--synthetic")
    assert r.returncode == 2 and "prefill.onnx: sha256 mismatch" in r.stderr


def test_export_command_then_run_synthetic(tmp_path):
    """The issue's recipe for every connector, with the one that takes detector boxes (the synthetic source
    reports its shapes' boxes, as a detector would)."""
    pytest.importorskip("torch")
    out = tmp_path / "t"
    r = _cli("export", "--preset", "tiny-mg", "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert (out / "manifest.json").exists() and "max |onnx - torch|" in r.stdout
    r = _cli("run", str(out), "--synthetic", "--streams", "2", "--frames", "2")
    assert r.returncode == 0, r.stderr
    assert "64 visual tokens" in r.stdout and "summary: 4 frames answered on 2 streams, 0 errors" in r.stdout
    r = _cli("export", "--preset", "nope", "--out", str(tmp_path / "n"))
    assert r.returncode == 2 and "unknown preset 'nope'; known presets: cambrian-sva-3b, cobra-3b" in r.stderr and "tiny-mg" in r.stderr


def test_kernels_command_says_what_runs_each_op():
    """`cobra-edge kernels` names every cobra_edge op and what runs it; exit 0 only when the library is used, and 1
    when it is turned off."""
    from engines.kernels import ENV, OPS, library

    r = _cli("kernels")
    assert r.returncode == (0 if library() else 1), r.stderr
    assert all(op in r.stdout for op in OPS) and "onnxruntime " in r.stdout
    off = _cli("kernels", env={ENV: "off"})
    assert off.returncode == 1 and "off" in off.stdout.lower(), off.stdout
