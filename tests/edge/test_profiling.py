"""`cobra-edge profile`: per-frame records in CSV/JSON (one per answered frame), a PNG, a summary; bad sources
and bad frames are recorded as errors of their stream while the others keep answering. Image-folder source."""

import csv
import json
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from edge.profiling import RECORD_FIELDS, run_profile, write_outputs
from edge.runtime import Runtime
from edge.sources import ImageFolderSource, SourceError, SyntheticSource, VideoSource
from tests.conftest import REPO


def test_profile_command_writes_csv_json_png(tiny_artifact, tmp_path):
    out = tmp_path / "prof" / "run"
    r = subprocess.run([sys.executable, "-m", "edge.cli", "profile", str(tiny_artifact), "--synthetic", "--streams", "2",
                        "--frames", "5", "--out", str(out), "--max-new-tokens", "3"],
                       cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert len(rows) == 10 and set(rows[0]) == set(RECORD_FIELDS)
    assert {r["stream"] for r in rows} == {"cam0", "cam1"} and all(float(r["total"]) > 0 for r in rows)
    doc = json.loads(out.with_suffix(".json").read_text())
    assert len(doc["records"]) == 10 and doc["errors"] == []
    s = doc["summary"]
    assert s["state_bytes_per_stream"] == 38912 and s["rss_end_bytes"] > 0 and s["streams"]["cam0"]["fps"] > 0
    assert {"p50", "p90", "p99", "max"} <= set(s["stages_ms"]["prefill"])
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "jitter ms" in r.stdout and "RSS" in r.stdout


class BadFrames:
    """A camera that delivers garbage: wrong shape, then wrong dtype, alternately."""

    def __init__(self):
        self.i = 0

    def read(self):
        self.i += 1
        frame = np.zeros((48, 64), np.uint8) if self.i % 2 else np.zeros((48, 64, 3), np.float32)
        return frame, time.time()


def test_bad_streams_are_recorded_and_the_others_answer(tiny_artifact, tmp_path):
    clip = tmp_path / "clip.avi"
    w = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    rng = np.random.default_rng(0)
    for _ in range(12):
        w.write(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    w.release()
    data = clip.read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: len(data) // 2])  # cut mid-frame, index gone: OpenCV reads ~5 frames
    rt = Runtime.load(tiny_artifact, max_streams=4, threads=1)
    sources = {"good": SyntheticSource(seed=1), "garbage": BadFrames(), "cut": VideoSource(str(truncated))}
    run = run_profile(rt, sources, "What is it?", frames=8, max_new_tokens=2, progress=False)
    per_stream = {n: sum(r["stream"] == n for r in run.records) for n in sources}
    print(per_stream, [e["error"][:60] for e in run.errors])
    assert per_stream["good"] == 8 and per_stream["garbage"] == 0
    assert 0 < per_stream["cut"] < 8  # the truncated clip ends early, and it is recorded
    assert any(e["stream"] == "cut" and "ended after" in e["error"] for e in run.errors)
    garbage = [e for e in run.errors if e["stream"] == "garbage"]
    assert len(garbage) == 8 and "'garbage'" in garbage[0]["error"]
    assert run.summary["streams"]["garbage"]["errors"] == 8 and run.summary["streams"]["good"]["errors"] == 0
    paths = write_outputs(run, tmp_path / "p.json")
    doc = json.loads(paths["json"].read_text())
    assert len(doc["records"]) == len(run.records) and len(list(csv.DictReader(open(paths["csv"])))) == len(run.records)


def test_image_folder_source(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:02d}.png"), np.full((20, 30, 3), i * 50, np.uint8))
    (tmp_path / "03.jpg").write_bytes(b"not a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")
    src = ImageFolderSource(str(tmp_path))
    got = [src.read()[0][0, 0, 0] for _ in range(3)]
    assert got == [0, 50, 100]
    assert src.read() is None  # the unreadable 03.jpg is skipped, not the end of the stream
    assert list(src.skipped) == [str(tmp_path / "03.jpg")] and src.skips == 1
    looping = ImageFolderSource(str(tmp_path), loop=True)
    assert [looping.read()[0][0, 0, 0] for _ in range(7)] == [0, 50, 100, 0, 50, 100, 0]
    assert looping.skips == 2  # once per pass
    with pytest.raises(SourceError, match="holds no images"):
        ImageFolderSource(str(_empty(tmp_path)))
    bad = _empty(tmp_path)
    (bad / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (bad / "b.jpg").write_bytes(b"garbage")
    with pytest.raises(SourceError, match="none of its 2 images can be read"):
        ImageFolderSource(str(bad), loop=True).read()


def test_image_folder_refuses_oversized_headers_before_decoding(tmp_path):
    from tests.faults import png_claiming

    cv2.imwrite(str(tmp_path / "00.png"), np.full((20, 30, 3), 7, np.uint8))
    (tmp_path / "01.png").write_bytes(png_claiming(100_000, 100_000))  # 1e10 pixels in a few bytes
    src = ImageFolderSource(str(tmp_path), max_pixels=10_000)
    assert src.read()[0][0, 0, 0] == 7
    assert src.read() is None
    assert "over the limit of 10,000" in src.skipped[str(tmp_path / "01.png")]


def _empty(tmp_path):
    d = tmp_path / f"empty{len(list(tmp_path.iterdir()))}"
    d.mkdir()
    return d


def test_an_unplanned_failure_inside_a_batch_is_in_the_profile(tiny_artifact, tmp_path):
    """The projector raises once (an unplanned exception): both streams of that batch record a RuntimeFault, the
    other rounds are answered, and the JSON holds the errors beside the records."""
    from tests.faults import FaultyEngine, raise_on_call

    rt = Runtime.load(tiny_artifact, max_streams=2, threads=1)
    rt.engines["projector"] = FaultyEngine(rt.engines["projector"], raise_on_call(3, AttributeError("injected")))
    sources = {"a": SyntheticSource(seed=1), "b": SyntheticSource(seed=2)}
    run = run_profile(rt, sources, "What is it?", frames=5, max_new_tokens=1, progress=False)
    assert len(run.records) == 8 and run.summary["streams"]["a"]["errors"] == 1
    assert [e["stream"] for e in run.errors] == ["a", "b"]
    assert all("unexpected AttributeError in a batch of 2: injected" in e["error"] for e in run.errors)
    doc = json.loads(write_outputs(run, tmp_path / "p")["json"].read_text())
    assert doc["errors"] == run.errors and doc["summary"]["interrupted"] is False
