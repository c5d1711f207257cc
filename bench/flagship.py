"""An exported vision-language artifact end to end, per precision and per number of streams, in fresh processes:
load time and resident memory, then frames of N synthetic camera streams answered as one batch, with each stage's
time (vision, projector, prefill of the image and prompt tokens, decode per token) and the resident memory during
the frames (sampled every 20 ms: the peak of the frame, not of the load).

    python -m bench.flagship /work/flagship/cobra-3b --precisions fp32 int8 int4 --streams 1 4 \\
        --export-log /tmp/cobra3b-export.log --out bench/results

``--export-log``: the log of the ``cobra-edge export`` that made the artifact (its progress lines, and GNU time's
report when run under ``/usr/bin/time -v``): export time and peak resident memory go into the JSON with the rest.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

SCHEMA = "cobra-edge-bench-flagship/1"
PROMPT = "What is in the image?"


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakSampler:
    """The highest resident memory seen while running (sampled by a thread)."""

    def __init__(self, every_s: float = 0.02):
        self.peak, self.every_s, self._stop = _rss(), every_s, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.every_s):
            self.peak = max(self.peak, _rss())

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, _rss())


def child(directory: str, precision: str, streams: int, frames: int, max_new_tokens: int, threads: int) -> dict:
    from edge.batch import Request
    from edge.runtime import Runtime
    from edge.sources import SyntheticSource

    out = {"rss_base": _rss(), "streams": streams, "precision": precision}
    t0 = time.perf_counter()
    with PeakSampler() as load_peak:
        rt = Runtime.load(directory, precision=precision, threads=threads, max_streams=streams)
    out.update(load_s=time.perf_counter() - t0, rss_load=_rss(), rss_load_peak=load_peak.peak, decode=rt.decode,
               state_bytes_per_stream=rt.bytes_per_stream, visual_tokens=rt.manifest.visual_tokens)
    names = [f"cam{i}" for i in range(streams)]
    cams = [rt.open_stream(n) for n in names]
    sources = [SyntheticSource(seed=i) for i in range(streams)]
    out["frames"] = []
    with PeakSampler() as frame_peak:
        for _ in range(frames):
            reqs = [Request(c, s.read()[0], PROMPT, max_new_tokens) for c, s in zip(cams, sources)]
            t = time.perf_counter()
            answers = rt.answer(reqs)
            wall = time.perf_counter() - t
            for a in answers:
                if isinstance(a, Exception):
                    raise a
            p = answers[0].profile
            out["frames"].append({
                "wall_s": wall, "batch": streams, "prefill_tokens": p.prefill_tokens, "new_tokens": p.new_tokens,
                **{k: getattr(p, k) for k in ("preprocess", "vision", "projector", "prefill", "decode", "total")},
                "decode_ms_per_token": p.decode / max(p.new_tokens - 1, 1),  # the first token comes with the prefill
                "answers": [a.text for a in answers]})
    out.update(rss_frames=_rss(), rss_frames_peak=frame_peak.peak)
    return out


def export_record(log: Path) -> dict:
    """Export time and peak memory from the export's progress lines and GNU time's report, if present."""
    text = log.read_text(errors="replace")
    rec = {}
    lines = re.findall(r"^\[\s*([\d.]+) s \| RSS\s+([\d.]+) GiB \| peak\s+([\d.]+) GiB\] (.*)$", text, re.M)
    if lines:
        rec["export_s"] = float(lines[-1][0])
        rec["export_peak_gib_progress"] = max(float(x[2]) for x in lines)
        rec["steps"] = [{"at_s": float(a), "rss_gib": float(b), "peak_gib": float(c), "step": d} for a, b, c, d in lines]
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    if m:
        rec["export_peak_gib"] = int(m.group(1)) * 1024 / 2**30
    m = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): ([\d:.]+)", text)
    if m:
        parts = [float(x) for x in m.group(1).split(":")]
        rec["export_wall_s"] = sum(x * 60 ** i for i, x in enumerate(reversed(parts)))
    return rec


def run(directory: str, precisions: list[str], streams: list[int], frames: int, max_new_tokens: int, threads: int,
        export_log: str | None, out_dir: Path) -> tuple[dict, Path]:
    from bench.memory import artifact_sizes

    d = Path(directory)
    doc = {"schema": SCHEMA, "artifact": str(d), "when": time.strftime("%Y-%m-%d %H:%M:%S"), "threads": threads,
           "frames": frames, "max_new_tokens": max_new_tokens, "load_avg_start": os.getloadavg(),
           "manifest_model": json.loads((d / "manifest.json").read_text())["model"]["name"],
           "sizes": artifact_sizes(d), "runs": []}
    if export_log:
        doc["export"] = export_record(Path(export_log))
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"flagship-{doc['manifest_model'].replace('+', '-')}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    for precision in precisions:
        for n in streams:
            r = subprocess.run([sys.executable, "-m", "bench.flagship", "--child", directory, precision, str(n),
                                str(frames), str(max_new_tokens), str(threads)], capture_output=True, text=True,
                               timeout=6 * 3600, cwd=Path(__file__).resolve().parents[1])
            if r.returncode != 0:
                doc["runs"].append({"precision": precision, "streams": n, "error": r.stderr[-3000:]})
            else:
                row = json.loads(r.stdout.strip().splitlines()[-1])
                doc["runs"].append(row)
                last = row["frames"][-1]
                print(f"{precision} x{n}: load {row['load_s']:.1f} s, RSS after load {row['rss_load'] / 2**30:.2f} GiB, "
                      f"during frames {row['rss_frames_peak'] / 2**30:.2f} GiB; last frame: vision {last['vision']:.0f} "
                      f"ms, projector {last['projector']:.0f}, prefill of {last['prefill_tokens']} tokens "
                      f"{last['prefill']:.0f}, decode {last['decode_ms_per_token']:.0f} ms/token", flush=True)
            doc["load_avg_end"] = os.getloadavg()
            path.write_text(json.dumps(doc, indent=1) + "\n")
    return doc, path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        directory, precision, streams, frames, tokens, threads = argv[1:7]
        print(json.dumps(child(directory, precision, int(streams), int(frames), int(tokens), int(threads))))
        return 0
    p = argparse.ArgumentParser(prog="python -m bench.flagship", description=__doc__.split("\n\n")[0])
    p.add_argument("artifact")
    p.add_argument("--precisions", nargs="+", default=["fp32"])
    p.add_argument("--streams", nargs="+", type=int, default=[1])
    p.add_argument("--frames", type=int, default=2)
    p.add_argument("--max-new-tokens", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--export-log")
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"))
    a = p.parse_args(argv)
    _, path = run(a.artifact, a.precisions, a.streams, a.frames, a.max_new_tokens, a.threads, a.export_log,
                  Path(a.out))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
