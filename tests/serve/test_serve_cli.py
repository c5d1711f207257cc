"""``cobra-edge serve``: starts a loopback cluster, answers over HTTP, stops everything on its own (--duration)
and on SIGINT, exits 0; bad options are exit 2 with one line."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time

import pytest

pytest.importorskip("ray")

from edge.serve.app import free_port  # noqa: E402
from edge.serve.client import ServeClient, ServeError  # noqa: E402

from .conftest import stream_items  # noqa: E402

pytestmark = pytest.mark.slow


def wait_up(client: ServeClient, proc, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        try:
            if client.health()["ok"]:
                return
        except (OSError, ServeError):  # not listening yet; the proxy up before the application (404)
            time.sleep(0.5)
    raise AssertionError("cobra-edge serve did not come up")


def test_serve_answers_then_stops_on_sigint(serve_artifact):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edge.cli", "serve", serve_artifact, "--replicas", "1",
                             "--port", str(port), "--max-streams", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # the pipe never fills
    reader.start()
    try:
        client = ServeClient(f"http://127.0.0.1:{port}")
        wait_up(client, proc)
        deadline = time.monotonic() + 60
        while not any("cobra-edge serve: http" in line for line in lines) and time.monotonic() < deadline:
            time.sleep(0.1)  # up: it says so once every replica has loaded
        client.open("cam0", "continuous")
        (f, p), = stream_items(0, 1)
        out = client.ask("cam0", f, p, max_new_tokens=3)
        assert out["status"] == "answered" and out["replica"] == "replica-0" and out["text"]
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        reader.join(10)
        stdout, stderr = "".join(lines), proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr[-3000:]
    assert f"cobra-edge serve: http://127.0.0.1:{port} (1 replica(s)" in stdout
    assert "cobra-edge serve: stopped" in stderr


def test_bad_options_are_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edge.cli", "serve", str(tmp_path), "--num-gpus", "1"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--device cuda" in r.stderr and "Traceback" not in r.stderr
    r = subprocess.run([sys.executable, "-m", "edge.cli", "serve", str(tmp_path / "nowhere")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "nowhere" in r.stderr and "Traceback" not in r.stderr
    assert "Started a local Ray instance" not in r.stderr  # refused before any cluster starts
