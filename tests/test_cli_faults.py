"""The command line under hostile use: numbers it cannot use, text that is not text, outputs it cannot write,
signals mid-run. Every case ends with one line naming the problem (never a traceback) and the documented exit
code; results of a run survive its interruption and never mix with another run's."""

import csv
import json
import signal
import subprocess
import sys
import time

import pytest

from edge.cli import main
from tests.conftest import REPO


def _popen(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "edge.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("argv, message", [
    (["run", "ART", "--synthetic", "--streams", "0"], "--streams: expected an integer >= 1, got 0"),
    (["run", "ART", "--synthetic", "--frames", "-1"], "--frames: expected an integer >= 1, got -1"),
    (["run", "ART", "--synthetic", "--threads", "-2"], "--threads: expected an integer >= 1, got -2"),
    (["run", "ART", "--synthetic", "--max-new-tokens", "x"], "--max-new-tokens: expected an integer >= 0, got 'x'"),
    (["profile", "ART", "--synthetic", "--out", "p", "--max-age-ms", "nan"], "--max-age-ms: expected a number > 0"),
    (["ros", "--model", "ART", "--topics", "/c", "--max-batch", "0"], "--max-batch: expected an integer >= 1, got 0"),
    (["ros", "--model", "ART", "--topics", "/c", "--max-new-tokens", "-1"], "expected an integer >= 0, got -1"),
    (["ros", "--model", "ART", "--topics", "/c", "--domain-id", "999"], "expected a DDS domain id 0..232"),
    (["ros", "--model", "ART", "--topics", "/c", "--max-pixels", "0"], "--max-pixels: expected an integer >= 1"),
    (["export", "--out", "x", "--seed", "-3"], "--seed: expected an integer >= 0, got -3"),
])
def test_numbers_are_checked_by_the_parser(argv, message, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_a_prompt_of_invalid_utf8_is_refused_in_one_line(tiny_artifact):
    r = subprocess.run([sys.executable, "-m", "edge.cli", "run", str(tiny_artifact), "--synthetic", "--prompt",
                        b"caf\xff"], cwd=REPO, capture_output=True, timeout=120)
    err = r.stderr.decode(errors="replace")
    assert r.returncode == 2 and "--prompt: prompt is not valid text" in err and "Traceback" not in err


def test_outputs_that_cannot_be_written_are_refused_before_anything_runs(tiny_artifact, tmp_path):
    afile = tmp_path / "a-file"
    afile.write_text("x")
    t0 = time.monotonic()
    r = _cli("profile", str(tiny_artifact), "--synthetic", "--out", str(afile / "run"))
    assert r.returncode == 2 and f"--out {afile / 'run'}: cannot write" in r.stderr, r.stderr
    assert "profiling" not in r.stdout  # refused before the artifact was loaded
    r = _cli("run", str(tiny_artifact), "--synthetic", "--out", str(afile / "run"))
    assert r.returncode == 2 and "cannot write" in r.stderr
    r = _cli("export", "--preset", "tiny", "--out", str(afile))
    assert r.returncode == 2 and f"--out {afile} is a file; give a directory" in r.stderr, r.stderr
    r = _cli("ros", "--transport", "bag", "--bag", str(tmp_path), "--model", str(tiny_artifact), "--out",
             str(tmp_path / "missing" / "out.jsonl"))
    assert r.returncode == 2 and f"folder {tmp_path / 'missing'} does not exist" in r.stderr, r.stderr
    for res in (r,):
        assert "Traceback" not in res.stderr
    assert time.monotonic() - t0 < 120


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _wait_rows(path, n, proc, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if path.exists() and len(_rows(path)) >= n:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_profile_interrupted_writes_what_it_answered(tiny_artifact, tmp_path, sig, code):
    out = tmp_path / "prof" / "run"
    p = _popen("profile", str(tiny_artifact), "--synthetic", "--streams", "2", "--frames", "100000",
               "--max-new-tokens", "2", "--out", str(out), text=True)
    try:
        assert _wait_rows(out.with_suffix(".csv"), 4, p), p.stderr.read() if p.poll() is not None else "no rows"
        p.send_signal(sig)
        stdout, stderr = p.communicate(timeout=20)
    finally:
        p.kill()
    assert p.returncode == code, stderr
    assert "Traceback" not in stderr and "interrupted:" in stdout and "p50 ms" in stdout  # the summary
    rows = _rows(out.with_suffix(".csv"))
    doc = json.loads(out.with_suffix(".json").read_text())
    assert len(rows) == len(doc["records"]) >= 4 and doc["summary"]["interrupted"] is True
    assert [r["frame_index"] for r in rows] == [str(r["frame_index"]) for r in doc["records"]]
    assert doc["summary"]["frames_answered"] == len(rows)


def test_two_runs_into_one_out_never_mix(tiny_artifact, tmp_path):
    """Run 1 (3 streams) completes; run 2 (1 stream) is killed mid-run with SIGKILL, then a run 3 (1 stream)
    completes: whatever is on disk after each run holds that run's records only."""
    out = tmp_path / "run"
    r = _cli("profile", str(tiny_artifact), "--synthetic", "--streams", "3", "--frames", "2", "--max-new-tokens", "1",
             "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert {row["stream"] for row in _rows(out.with_suffix(".csv"))} == {"cam0", "cam1", "cam2"}
    assert out.with_suffix(".png").exists()

    p = _popen("profile", str(tiny_artifact), "--synthetic", "--streams", "1", "--frames", "100000",
               "--max-new-tokens", "1", "--out", str(out), text=True)
    try:
        assert p.stdout.readline().startswith("profiling")  # run 2 has opened its files (it does before loading)
        assert _wait_rows(out.with_suffix(".csv"), 2, p)
    finally:
        p.kill()
        p.communicate(timeout=20)
    rows = _rows(out.with_suffix(".csv"))  # every row written so far, each whole
    assert len(rows) >= 2 and {row["stream"] for row in rows} == {"cam0"}
    assert all(row["answer"] is not None and row["total"] for row in rows)
    assert not out.with_suffix(".json").exists() and not out.with_suffix(".png").exists()  # run 1's are gone

    r = _cli("profile", str(tiny_artifact), "--synthetic", "--streams", "1", "--frames", "2", "--max-new-tokens", "1",
             "--out", str(out))
    assert r.returncode == 0
    doc = json.loads(out.with_suffix(".json").read_text())
    assert {rec["stream"] for rec in doc["records"]} == {"cam0"} and len(_rows(out.with_suffix(".csv"))) == 2
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


def test_run_interrupted_prints_its_summary_and_keeps_its_records(tiny_artifact, tmp_path):
    out = tmp_path / "r"
    p = _popen("run", str(tiny_artifact), "--synthetic", "--streams", "2", "--frames", "100000",
               "--max-new-tokens", "2", "--out", str(out), text=True)
    try:
        assert _wait_rows(out.with_suffix(".csv"), 3, p)
        p.send_signal(signal.SIGINT)
        stdout, stderr = p.communicate(timeout=20)
    finally:
        p.kill()
    assert p.returncode == 130 and "Traceback" not in stderr
    assert "interrupted:" in stdout and "summary:" in stdout and "state bytes per stream" in stdout
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["summary"]["interrupted"] and len(doc["records"]) == len(_rows(out.with_suffix(".csv")))


def test_a_signal_while_loading_ends_the_command_with_a_line(tiny_artifact, tmp_path):
    """SIGTERM while the artifact loads (slowed down here so the signal lands there): exit 143 within 2 s and
    one line, no traceback."""
    code = ("import sys, time; import edge.runtime as r; real = r.Runtime.load.__func__\n"
            "def slow(cls, *a, **k):\n    print('loading', flush=True); time.sleep(30); return real(cls, *a, **k)\n"
            "r.Runtime.load = classmethod(slow)\nfrom edge.cli import main; sys.exit(main(sys.argv[1:]))")
    p = subprocess.Popen([sys.executable, "-c", code, "run", str(tiny_artifact), "--synthetic"], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "loading"
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        _, stderr = p.communicate(timeout=10)
        took = time.monotonic() - t0
    finally:
        p.kill()
    assert p.returncode == 143 and took < 2, (p.returncode, took)
    assert stderr.strip() == "cobra-edge run: interrupted by SIGTERM"
