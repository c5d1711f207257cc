"""``cobra-edge loop --sim``: the closed-loop simulation (docs/loop.md).

    cobra-edge loop --sim [DIR] --policy oracle choose act --episodes 20 --seed 0 --latency measured|MS
                    --multipliers 1 2 4 8 --mode reset continuous --out DIR

DIR: an exported artifact (default: the embedded trained tiny model, exported once into $COBRA_EDGE_CACHE as
``cobra-edge demo`` does); the oracle needs none. Writes loop-<policies>-<date>.json / .md / .png to --out
(default $COBRA_EDGE_CACHE/loop-results, outside the repository) and prints the table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict
from pathlib import Path

from ..argtypes import non_negative_int, positive_float, positive_int, prompt_text

POLICIES = ("oracle", "choose", "act")
ORACLE_LATENCY_MS = 20.0  # the oracle's latency when the others' is measured: it has no model to time


def latency_arg(text: str) -> float | None:
    """"measured" -> None, else milliseconds > 0."""
    if text == "measured":
        return None
    try:
        return positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected 'measured' or milliseconds > 0, got {text!r}") from None


def add_parser(sub) -> None:
    p = sub.add_parser("loop", help="closed-loop simulation: a robot driven by the model's answers, success against "
                                    "latency (docs/loop.md)",
                       description="A robot in a 2-D world must reach the shape the prompt names and stop before it; "
                                   "each tick the policy answers the newest frame and simulated time advances by its "
                                   "latency. Writes JSON, Markdown and a PNG of success against latency (docs/loop.md).")
    p.add_argument("--sim", nargs="?", const="", metavar="DIR", required=True,
                   help="simulate (the only loop so far); DIR: the artifact (default: the embedded trained tiny model)")
    p.add_argument("--policy", nargs="+", choices=POLICIES, default=["oracle", "choose"],
                   help="oracle: reads the truth; choose: answer-set scoring over left/right/ahead/stop; act: the "
                        "artifact's action heads (bearing, distance)")
    p.add_argument("--episodes", type=positive_int, default=20, help="seeded episodes per point")
    p.add_argument("--seed", type=non_negative_int, default=0, help="first episode's seed (then seed+1, ...)")
    p.add_argument("--latency", type=latency_arg, default=None, metavar="measured|MS",
                   help=f"simulated time per tick: each model call's measured wall time (default), or fixed ms "
                        f"(deterministic); the oracle has nothing to measure and uses {ORACLE_LATENCY_MS:g} ms / --time-scale "
                        f"then")
    p.add_argument("--multipliers", type=positive_float, nargs="+", default=[1.0, 2.0, 4.0, 8.0],
                   help="latency multipliers, one point each")
    p.add_argument("--mode", nargs="+", choices=("reset", "continuous"), default=["reset", "continuous"],
                   help="stream modes of the model policies")
    p.add_argument("--prompt", type=prompt_text, default=None,
                   help="prompt template with {colour} and {kind} of the target (default: 'Where should I go to "
                        "reach the {colour} {kind}?')")
    p.add_argument("--threads", type=positive_int, default=1, help="intra-op threads per graph")
    p.add_argument("--time-scale", type=positive_float, default=1.0, metavar="K",
                   help="run the world K times faster: speed and turn-rate limits and the controller's turn rates "
                        "x K, timeout / K; latency L here acts as K x L in the plain world, whose success falls "
                        "from 100 ms (docs/loop.md, 'Time scale')")
    p.add_argument("--out", default=None, help="results folder (default: $COBRA_EDGE_CACHE/loop-results; "
                                               "--out bench/results to record a run in the repository)")
    p.set_defaults(func=cmd_loop)


def _runtime(directory, policies, streams: int, threads: int, say):
    from ..embedded import embedded_artifact
    from ..runtime import Runtime, Stream

    directory = Path(directory) if directory else embedded_artifact(None, say=say, unchecked_ok=True)
    runtime = Runtime.load(directory, max_streams=streams, threads=threads)
    if "act" in policies:
        missing = []
        if "heads" not in runtime.manifest.raw:
            missing.append("its manifest.json has no 'heads' entry (exported without action heads)")
        if not callable(getattr(Stream, "act", None)):
            missing.append("this runtime's Stream has no act() (action heads are not in this cobra-edge yet)")
        if missing:
            raise ValueError(f"--policy act: artifact {directory} cannot act: " + "; ".join(missing) +
                             ". Use --policy choose (answer-set scoring) or oracle")
    return directory, runtime


def cmd_loop(args) -> int:
    from ..embedded import default_cache_dir
    from .camera import CameraConfig
    from .policies import PROMPT, ActPolicy, ChoosePolicy, Controller, OraclePolicy, stream_act_fn
    from .report import document, markdown, sweep, write
    from .world import WorldConfig

    def say(message):
        print(message, flush=True)

    names = list(dict.fromkeys(args.policy))
    prompt = args.prompt or PROMPT
    if args.prompt is not None:  # refuse a template with unknown fields now, not at the first episode
        from .policies import target_prompt
        from .world import make_world

        target_prompt(prompt, make_world(0))
    out = Path(args.out) if args.out else default_cache_dir() / "loop-results"
    out.mkdir(parents=True, exist_ok=True)  # an unusable --out is refused before any episode runs
    directory, runtime = None, None
    if any(n != "oracle" for n in names):
        streams = sum(n != "oracle" for n in names) * len(set(args.mode))
        directory, runtime = _runtime(args.sim or None, names, streams, args.threads, say)
        say(f"model {runtime.manifest.model.get('name')} from {directory}; selective scan: {runtime.selective_scan}")
    k = args.time_scale
    controller = Controller().faster(k)
    policies = []
    for name in names:
        if name == "oracle":
            own = ORACLE_LATENCY_MS / k if args.latency is None else None
            if own is not None:
                say(f"oracle: no model to time; its latency is {own:g} ms x multiplier (--latency MS to change)")
            policies.append((OraclePolicy(controller), None, own))
            continue
        for mode in dict.fromkeys(args.mode):
            stream = runtime.open_stream(f"loop-{name}-{mode}", mode=mode)
            if name == "choose":
                policies.append((ChoosePolicy(stream, prompt, turn_w=1.5 * k), mode, None))
            else:  # the heads were trained on the position question (edge/sim/examples.py), unless --prompt
                from .examples import HEAD_PROMPT

                policies.append((ActPolicy(stream_act_fn(stream), args.prompt or HEAD_PROMPT, controller,
                                           reset=stream.reset),
                                 mode, None))
    world = WorldConfig().faster(k)
    camera = CameraConfig()
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    runs = sweep(policies, args.episodes, args.seed, args.latency, args.multipliers, world, camera, say=say)
    doc = document(runs, args.episodes, args.seed, args.latency, args.multipliers, world, camera,
                   None if directory is None else str(directory), load_before, time.perf_counter() - t0,
                   {"prompt": prompt, "policies": names,
                    "model": None if runtime is None else runtime.manifest.model.get("name"),
                    "oracle_latency_ms": ORACLE_LATENCY_MS / k if args.latency is None and "oracle" in names else None,
                    "time_scale": k, "controller": asdict(controller)})
    print()
    print(markdown(doc))
    paths = write(doc, out, f"loop-{'-'.join(names)}-{time.strftime('%Y%m%d-%H%M%S')}")
    if "png" not in paths:
        print("(no PNG: matplotlib is not installed; pip install 'cobra-edge[plot]')", file=sys.stderr)
    print("\nwrote " + ", ".join(str(p) for p in paths.values()))
    return 0
