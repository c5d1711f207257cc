"""Act against ask, side by side: the control path (vision, projector, one prefill, the heads) and the text path
(the same, then greedy decoding) on the same frames of the same artifact, in turns, per stage, for 1 and several
streams in one batch.

    python -m bench.act ARTIFACT [--streams 1 4] [--rounds 30] [--max-new-tokens 4] [--out bench/results]

Frames are camera views of the loop's world (edge/sim/examples.py) with their target prompts. Each round runs
every contender once on the round's frames (order rotating per round), so load drifts hit all of them alike;
the JSON holds every frame's per-stage times, and the summary medians with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from edge.batch import Request
from edge.profile import STAGES
from edge.runtime import Runtime
from edge.sim.examples import head_examples

from .timing import RESULTS_DIR, machine_info

CONTENDERS = ("act", "ask")


def _round(rt: Runtime, streams, examples, contender: str, max_new_tokens: int) -> list:
    reqs = [Request(s, e.frame, e.prompt, 0 if contender == "act" else max_new_tokens, act=contender == "act")
            for s, e in zip(streams, examples)]
    results = rt.answer(reqs)
    for r in results:
        if isinstance(r, Exception):
            raise r
    return results


def run(artifact: str, streams: tuple[int, ...] = (1, 4), rounds: int = 30, max_new_tokens: int = 4,
        threads: int = 2, precision: str = "fp32", out_dir: Path = RESULTS_DIR, say=print) -> tuple[dict, Path]:
    rt = Runtime.load(artifact, max_streams=max(streams), threads=threads, precision=precision)
    if not rt.manifest.heads:
        raise SystemExit(f"{artifact}: no action heads (act needs them); export with --heads")
    pool = head_examples(2024, rounds * max(streams))
    load_before = [round(v, 2) for v in os.getloadavg()]
    rows = []
    for n in streams:
        opened = [rt.open_stream(f"b{n}-{i}") for i in range(n)]
        per: dict[str, list] = {c: [] for c in CONTENDERS}
        _round(rt, opened, pool[:n], "ask", max_new_tokens)  # warm-up
        for k in range(rounds):
            frames = pool[k * n:(k + 1) * n]
            for c in (CONTENDERS if k % 2 == 0 else CONTENDERS[::-1]):
                per[c] += [r.profile.to_dict() | {"new_tokens": len(r.token_ids)}
                           for r in _round(rt, opened, frames, c, max_new_tokens)]
        for s in opened:
            s.close()
        med = {c: {st: float(np.median([p[st] for p in per[c]])) for st in (*STAGES, "new_tokens")} for c in per}
        rows.append({"streams": n, "median_ms": med, "ask_over_act_total": med["ask"]["total"] / med["act"]["total"],
                     "frames": per})
        say(f"{n} stream(s): act total {med['act']['total']:.2f} ms (heads {med['act']['heads']:.2f}), ask total "
            f"{med['ask']['total']:.2f} ms (decode {med['ask']['decode']:.2f}, {med['ask']['new_tokens']:.0f} tokens)"
            f": ask / act {rows[-1]['ask_over_act_total']:.2f}x")
    doc = {"schema": "cobra-edge-bench-act/1", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "artifact": str(artifact),
           "model": rt.manifest.model.get("name"), "precision": precision, "rounds": rounds,
           "max_new_tokens": max_new_tokens, "machine": machine_info(threads),
           "load_average_before": load_before, "load_average_after": [round(v, 2) for v in os.getloadavg()],
           "method": "same frames per round, contenders in turns (order alternating), per-frame profiles; medians",
           "rows": rows}
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"act-vs-ask-{doc['model']}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(doc, indent=1) + "\n")
    return doc, path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.act", description=__doc__.splitlines()[0])
    p.add_argument("artifact")
    p.add_argument("--streams", type=int, nargs="+", default=[1, 4])
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--max-new-tokens", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--out", default=str(RESULTS_DIR))
    a = p.parse_args(argv)
    _, path = run(a.artifact, tuple(a.streams), a.rounds, a.max_new_tokens, a.threads, a.precision, Path(a.out))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
