"""What `cobra-edge profile` reports (edge.profile_summary, edge.profile_plot): the PNG's panels (title block, a lane per
stream, stage medians, frame age, drops) for a 4-stream run and for a video, the same figures in the JSON, checked
against the records; a video read faster than real time says so, a paced one does not."""

import datetime
import json
import math
import struct
import sys
import time

import cv2
import numpy as np
import pytest

from edge.cli import main
from edge.profile import STAGES
from edge.profile_summary import source_lines
from edge.profiling import run_profile, write_outputs
from edge.runtime import Runtime
from edge.sources import SyntheticSource, VideoSource


class StaleEveryOther:
    """A camera whose odd frames arrive stamped 10 s ago: with max_age_ms they are dropped as stale."""

    kind = "stale every other"

    def __init__(self):
        self.source = SyntheticSource(seed=9)

    def read(self):
        frame, ts = self.source.read()
        return frame, ts - 10.0 if self.source.index % 2 else ts


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "not a PNG"
    return struct.unpack(">II", data[16:24])


def p50_p99(values):
    return {"p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99))}


def test_four_streams_png_panels_and_json_figures_agree_with_the_records(tiny_artifact, tmp_path):
    pytest.importorskip("matplotlib")
    from edge.profile_plot import build_figure

    rt = Runtime.load(tiny_artifact, max_streams=4, threads=1)
    sources = {"front": SyntheticSource(seed=1), "left": SyntheticSource(seed=2), "right": SyntheticSource(seed=3),
               "rear": StaleEveryOther()}
    frames = 6
    run = run_profile(rt, sources, "What is it?", frames=frames, max_new_tokens=2, max_age_ms=5000, progress=False,
                      threads=1)
    paths = write_outputs(run, tmp_path / "run")
    width, height = png_size(paths["png"])
    print(f"PNG {width} x {height}, {paths['png'].stat().st_size:,} bytes")
    assert width >= 1000 and height >= 700 and paths["png"].stat().st_size > 20_000
    fig = build_figure(run.records, run.errors, run.summary)
    assert len(fig.axes) == len(sources) + 5  # title, 4 lanes, age, drops, stage medians, histogram
    assert [ax.get_ylabel() for ax in fig.axes[1:5]] == list(sources)  # one lane per stream, in order

    doc = json.loads(paths["json"].read_text())
    s, records = doc["summary"], doc["records"]
    assert s["lanes"] == list(sources) and s["frames_answered"] == len(records) == 3 * frames + frames // 2
    for key in ("stages_ms", "streams", "wall_s", "state_bytes_per_stream", "rss_start_bytes", "interrupted"):
        assert key in s  # the keys other readers had stay
    for r in records:
        assert r["age_at_answer_ms"] == pytest.approx(r["age_ms"] + r["total"])
    for name in sources:
        mine = [r for r in records if r["stream"] == name]
        fig_s = s["streams"][name]
        for stage in STAGES:  # the lanes' p50 / p99 lines and the bars of medians
            assert fig_s["stages_ms"][stage] == pytest.approx(p50_p99([r[stage] for r in mine]))
        assert fig_s["age_at_answer_ms"] == pytest.approx(p50_p99([r["age_at_answer_ms"] for r in mine]))
        assert len(fig_s["drops_per_s"]) == max(1, math.ceil(s["wall_s"]))
        assert sum(fig_s["drops_per_s"]) == fig_s["dropped"] == sum(r["dropped"] for r in mine)
    assert s["streams"]["rear"]["dropped"] == frames // 2 and s["streams"]["front"]["dropped"] == 0
    assert s["age_at_answer_ms"] == pytest.approx(p50_p99([r["age_at_answer_ms"] for r in records]))
    assert s["stages_ms"]["total"]["p50"] == pytest.approx(np.percentile([r["total"] for r in records], 50))

    t = s["title"]
    assert t["model"] == rt.manifest.model["name"] and t["precision"] == "fp32" and t["threads"] == 1
    assert t["streams"] == 4 and t["max_age_ms"] == 5000 and t["cpu"] and t["cpu_count"] >= 1
    assert abs(datetime.datetime.fromisoformat(t["date"]).timestamp() - time.time()) < 600
    assert t["load_avg_start"] is None or len(t["load_avg_start"]) == 3
    assert s["sources"]["front"]["kind"] == "synthetic" and s["sources"]["front"]["fps"] is None
    assert s["sources"]["front"]["faster_than_real_time"] is None and s["sources"]["front"]["frames_read"] == frames
    assert s["sources"]["rear"]["kind"] == "stale every other"


def _clip(path, fps: float, frames: int):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (96, 64))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    writer.release()
    return path


def test_a_video_read_faster_than_real_time_says_so_and_a_paced_one_does_not(tiny_artifact, tmp_path):
    pytest.importorskip("matplotlib")
    # 4 fps: an unpaced read stays faster than real time even when a loaded machine takes 200 ms a frame
    clip = _clip(tmp_path / "clip.mp4", fps=4, frames=20)
    rt = Runtime.load(tiny_artifact, max_streams=1, threads=1)
    report = {}
    for paced in (False, True):
        run = run_profile(rt, {"cam": VideoSource(str(clip), paced=paced)}, "What is it?", frames=6,
                          max_new_tokens=1, progress=False, threads=1)
        rt.streams["cam"].close()
        paths = write_outputs(run, tmp_path / f"paced{paced}")
        assert png_size(paths["png"])[0] >= 1000
        report[paced] = json.loads(paths["json"].read_text())["summary"]
    fast, paced = report[False]["sources"]["cam"], report[True]["sources"]["cam"]
    print("unpaced", fast, "\npaced", paced)
    assert fast["kind"] == "video" and fast["fps"] == 4 and fast["paced"] is False
    assert fast["read_fps"] > 4.2 and fast["faster_than_real_time"] is True
    assert fast["real_time_x"] == pytest.approx(fast["read_fps"] / 4)
    assert paced["paced"] is True and paced["faster_than_real_time"] is False and paced["read_fps"] <= 4.2
    assert paced["frames_read"] == 6 and report[True]["wall_s"] >= 1.25  # 6 frames due at 0, 0.25, .. 1.25 s
    (text, flagged), = source_lines(report[False])
    assert flagged and "READ FASTER THAN REAL TIME" in text and "not paced" in text
    (text, flagged), = source_lines(report[True])
    assert not flagged and "paced at its frame rate" in text


def test_a_paced_video_passes_over_the_frames_it_is_late_for(tmp_path):
    clip = _clip(tmp_path / "clip.mp4", fps=10, frames=20)
    src = VideoSource(str(clip), paced=True)
    _, ts0 = src.read()
    time.sleep(0.35)  # frames 1, 2 and 3 fall due meanwhile: 3 is delivered, 1 and 2 are gone
    _, ts1 = src.read()
    print(f"passed over {src.passed_over}, capture times {ts1 - ts0:.4f} s apart")
    assert src.passed_over >= 2 and src.index == 2
    assert ts1 - ts0 == pytest.approx((1 + src.passed_over) / 10, abs=0.01)  # stamped when each was due
    t = time.monotonic()
    src.read()  # on time now: waits for the next frame's turn
    assert 0.0 <= time.monotonic() - t <= 0.15
    assert src.describe() == {"kind": "video", "path": str(clip), "fps": 10.0, "paced": True,
                              "passed_over": src.passed_over}
    unpaced = VideoSource(str(clip))
    t = time.monotonic()
    assert sum(unpaced.read() is not None for _ in range(20)) == 20 and unpaced.read() is None
    assert time.monotonic() - t < 1.0  # 20 frames of a 2 s clip, at once


def test_paced_needs_a_video(tmp_path, capsys):
    assert main(["profile", str(tmp_path), "--synthetic", "--paced", "--out", str(tmp_path / "p")]) == 2
    assert "--paced reads a --video file" in capsys.readouterr().err


def test_without_matplotlib_no_png_and_the_json_still_holds_the_figures(tmp_path, monkeypatch):
    from edge.profiling import ProfileRun

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib... raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    summary = {"streams": {}, "stages_ms": {}, "wall_s": 0.0, "frames_answered": 0, "lanes": []}
    paths = write_outputs(ProfileRun(summary=summary), tmp_path / "run")
    assert set(paths) == {"csv", "json"} and not (tmp_path / "run.png").exists()
    assert json.loads(paths["json"].read_text())["summary"]["lanes"] == []
