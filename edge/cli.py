"""The ``cobra-edge`` command line: export, run, profile, demo, bench, ros, loop, inspect, kernels."""

from __future__ import annotations

import argparse
import sys
import threading

from engines import EngineError

from .argtypes import DEFAULT_PROMPT, device_arg, non_negative_int, positive_float, positive_int, prompt_text
from .cli_inspect import cmd_inspect, cmd_kernels
from .cli_workshop import cmd_bench, cmd_eval, cmd_export, cmd_train
from .embedded import embedded_artifact
from .errors import CobraEdgeError
from .imageheader import DEFAULT_MAX_PIXELS
from .signals import Interrupted, raise_on_signals, stop_on_signals

EXIT_INTERRUPTED = 130  # 128 + SIGINT (143 for SIGTERM): run and profile stopped by a signal, results written


def _fmt_row(cols, widths) -> str:
    return "".join(f"{c:<{w}}" if i in (0, len(widths) - 1) else f"{c:>{w}}" for i, (c, w) in enumerate(zip(cols, widths)))


ROW_WIDTHS = (10, 6, 8, 8, 8, 9, 9, 9, 5, 40)
ROW_HEAD = ("stream", "frame", "prep", "vision", "proj", "prefill", "decode", "total", "tok", "  answer")


def _print_answer(answer) -> None:
    p = answer.profile
    text = repr(answer.text)
    text = text if len(text) <= 38 else text[:35] + "...'"
    question = getattr(answer, "tag", None)
    if hasattr(question, "answer"):  # a synthetic world frame: its question and exact answer beside the model's
        mark = "ok" if answer.text.strip().lower() == question.answer else "WRONG"
        text = f"{text:<10} truth {question.answer!r:<9} {mark:<5}  ({question.prompt})"
    print(_fmt_row((answer.stream, p.frame_index, f"{p.preprocess:.1f}", f"{p.vision:.1f}", f"{p.projector:.1f}",
                    f"{p.prefill:.1f}", f"{p.decode:.1f}", f"{p.total:.1f}", p.new_tokens, "  " + text), ROW_WIDTHS),
          flush=True)


def _run(directory, sources: dict, args) -> int:
    from .profiling import RECORD_FIELDS
    from .records import RecordFiles
    from .runner import answer_sources
    from .runtime import Runtime

    files = RecordFiles(args.out, RECORD_FIELDS) if getattr(args, "out", None) else None  # refused before loading
    runtime = Runtime.load(directory, backend=args.backend, max_streams=max(len(sources), 1),
                           threads=args.threads, precision=args.precision, on_nonfinite=args.on_nonfinite,
                           device=args.device)
    print(f"model {runtime.manifest.model.get('name')} from {directory}: {runtime.manifest.visual_tokens} visual tokens, "
          f"state {runtime.bytes_per_stream:,} bytes per stream, backend {runtime.backend}, {runtime.precision}, "
          f"device {runtime.device}")
    print(f"selective scan: {runtime.selective_scan}")
    from .provenance import random_warning

    warning = random_warning(runtime.manifest)
    if warning:
        print(warning, file=sys.stderr)
    print(_fmt_row(ROW_HEAD, ROW_WIDTHS) + "   (times in ms)")
    errors = []
    records = []
    answers = []

    def on_error(name, e):
        errors.append((name, e))
        print(f"{name:<10} error: {e}", file=sys.stderr, flush=True)

    def on_answer(answer):
        answers.append(answer)
        _print_answer(answer)
        records.append({**answer.profile.to_dict(), "answer": answer.text})
        if files is not None:
            files.add(records[-1])

    ask_world = args.prompt is None and all(hasattr(s, "question") for s in sources.values())
    with stop_on_signals() as signalled:
        profiler = answer_sources(runtime, sources, None if ask_world else (args.prompt or DEFAULT_PROMPT), args.frames,
                                  args.max_new_tokens, on_answer=on_answer, on_error=on_error, stop=signalled.stop)
    failed = [(n, e) for n, e in errors if not isinstance(e, EOFError)]
    print()
    if signalled.signum is not None:
        print(f"interrupted: {len(profiler.frames)} frames answered before the signal")
    print(f"summary: {len(profiler.frames)} frames answered on {len(sources)} streams, {len(failed)} errors")
    print(profiler.format_summary())
    print(f"state bytes per stream: {runtime.bytes_per_stream:,}")
    scored = [a for a in answers if hasattr(a.tag, "answer")]
    if scored:
        right = sum(a.text.strip().lower() == a.tag.answer for a in scored)
        print(f"accuracy: {right} of {len(scored)} answers equal the scene's exact answer ({100 * right / len(scored):.0f} %; "
              f"a small sample: cobra-edge eval measures 500 questions per family)")
    if files is not None:
        doc = {"records": records, "errors": [{"stream": n, "error": str(e)} for n, e in failed],
               "summary": {"stages_ms": profiler.summary(), "frames_answered": len(records),
                           "interrupted": signalled.signum is not None}}
        print("wrote " + ", ".join(str(p) for p in files.finish(doc).values()))
    if signalled.exit_code is not None:
        return signalled.exit_code
    return 0 if profiler.frames else 1


def _sources(args) -> dict:
    from .sources import ImageFolderSource, VideoSource
    from .world.source import WorldSource

    names = [f"cam{i}" for i in range(args.streams)]
    if getattr(args, "images", None):
        return {n: ImageFolderSource(args.images, loop=True, max_pixels=args.max_pixels) for n in names}
    if getattr(args, "camera", None) is not None:  # V4L2 index (or a GStreamer pipeline string) through OpenCV
        camera = int(args.camera) if str(args.camera).isdigit() else args.camera
        return {n: VideoSource(camera) for n in names[:1]}
    if args.video:
        return {n: VideoSource(args.video, loop=True, paced=getattr(args, "paced", False)) for n in names}
    return {n: WorldSource(seed=i) for i, n in enumerate(names)}


def cmd_profile(args) -> int:
    from .profiling import RECORD_FIELDS, format_summary, run_profile, write_outputs
    from .records import RecordFiles
    from .runtime import Runtime

    if args.paced and not args.video:
        raise ValueError("--paced reads a --video file at its frame rate; the other sources have none")
    files = RecordFiles(args.out, RECORD_FIELDS)  # an unwritable --out is refused now, not after the run
    sources = _sources(args)
    runtime = Runtime.load(args.dir, backend=args.backend, max_streams=max(len(sources), 1), threads=args.threads,
                           precision=args.precision, on_nonfinite=args.on_nonfinite, device=args.device)
    print(f"profiling {len(sources)} streams x {args.frames} frames on {args.dir} ({runtime.manifest.visual_tokens} "
          f"visual tokens, {runtime.bytes_per_stream:,} state bytes per stream); selective scan: {runtime.selective_scan}")
    with stop_on_signals() as signalled:
        run = run_profile(runtime, sources, args.prompt or DEFAULT_PROMPT, args.frames, args.max_new_tokens,
                          max_age_ms=args.max_age_ms, mode=args.mode, files=files, stop=signalled.stop,
                          threads=args.threads)
    for e in run.errors:
        print(f"{e['stream']:<10} error: {e['error']}", file=sys.stderr)
    if signalled.signum is not None:
        print(f"interrupted: {len(run.records)} frames answered before the signal; writing them")
    print(format_summary(run.summary))
    paths = write_outputs(run, args.out, files)
    if "png" not in paths:
        print("(no PNG: matplotlib is not installed; pip install 'cobra-edge[plot]')")
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    if signalled.exit_code is not None:
        return signalled.exit_code
    return 0 if run.records else 1


def cmd_run(args) -> int:
    return _run(args.dir, _sources(args), args)


def cmd_demo(args) -> int:
    """Export the trained tiny model once (cached), then ask it about synthetic frames on several streams."""
    directory = embedded_artifact(args.dir, precisions=("fp32", args.precision))
    args.video = None
    return _run(directory, _sources(args), args)


class _DefaultsHelp(argparse.ArgumentDefaultsHelpFormatter):
    """Help that shows each option's default, except where there is none to show (None, off) or the help says it."""

    def _get_help_string(self, action):
        if action.default in (None, False) or "default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cobra-edge", description="Mamba vision-language models on robots.")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("export", help="export a model to an artifact directory (needs the export extra)")
    e.add_argument("--preset", default=None,
                   help="built-in preset (default: tiny); with --checkpoint, its dimensions instead of the config's")
    e.add_argument("--checkpoint", help="local folder: Hugging Face or mamba_ssm Mamba, or Cobra (config.json + "
                                         "checkpoints/latest-checkpoint.pt)")
    e.add_argument("--vision-weights", nargs="+", metavar="[NAME=]PATH",
                   help="timm-named vision weights per encoder (e.g. dinov2=dino.safetensors siglip=siglip.bin)")
    e.add_argument("--tokenizer", help="tokenizer.json (default: the one in --checkpoint)")
    e.add_argument("--out", required=True, help="artifact directory to write")
    e.add_argument("--seed", type=non_negative_int, default=0, help="seed of the random weights")
    e.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    e.add_argument("--precision", nargs="+", default=["fp32"], choices=("fp32", "fp16", "int8", "int4"),
                   help="also write these variants of the prefill and step graphs (fp32 is always written)")
    e.add_argument("--keep-float", nargs="+", default=(), metavar="NAME",
                   help="int8 / int4 variants: leave the projections whose weight names contain NAME in float32 "
                        "(e.g. out_proj: docs/evaluation.md, which weights int8 loses on; default: none)")
    e.add_argument("--trained", action="store_true",
                   help="the embedded trained tiny model (export/trained/tiny.safetensors) instead of random weights")
    e.add_argument("--weights", help="a checkpoint written by 'cobra-edge train' (.safetensors)")
    e.add_argument("--heads", help="action heads to export with the model (.safetensors, layout in "
                                   "docs/architecture.md 'Heads'; --trained brings the embedded ones)")
    e.set_defaults(func=cmd_export)

    def runtime_args(q):
        q.add_argument("--streams", type=positive_int, default=2, help="number of camera streams")
        q.add_argument("--frames", type=positive_int, default=4, help="frames per stream")
        q.add_argument("--prompt", type=prompt_text, default=None,
                       help=f"what to ask every frame (default: synthetic frames are asked the world's questions, "
                            f"with the exact answer beside the model's; other sources {DEFAULT_PROMPT!r})")
        q.add_argument("--max-new-tokens", type=non_negative_int, default=8, help="answer length limit in tokens")
        q.add_argument("--backend", default="onnxruntime", help="engine backend")
        q.add_argument("--threads", type=positive_int, default=None, help="intra-op threads per graph")
        device_arg(q)
        q.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8", "int4"),
                       help="which of the artifact's variants to run (see cobra-edge inspect)")
        q.add_argument("--on-nonfinite", choices=("reset", "fail"), default="reset",
                       help="a stream whose state stops being finite: reset it, or fail its frames until restart")
        q.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                       help="refuse images larger than this many pixels before decoding (image folders)")

    r = sub.add_parser("run", help="answer frames from a video or synthetic streams")
    r.add_argument("dir", help="artifact directory")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", help="video file (every stream reads its own copy, looping)")
    src.add_argument("--synthetic", action="store_true", help="moving shapes, one scene per stream")
    r.add_argument("--out", help="also write per-frame records: PATH.csv as frames are answered, PATH.json at the end")
    runtime_args(r)
    r.set_defaults(func=cmd_run)

    pr = sub.add_parser("profile", help="per-frame latency records (CSV, JSON, PNG) through the batching scheduler")
    pr.add_argument("dir", help="artifact directory")
    src = pr.add_mutually_exclusive_group(required=True)
    src.add_argument("--video", help="video file (every stream reads its own copy, looping)")
    src.add_argument("--synthetic", action="store_true", help="moving shapes, one scene per stream")
    src.add_argument("--images", help="a folder of images (name order, looping)")
    src.add_argument("--camera", help="camera index (V4L2) or GStreamer pipeline, through OpenCV: one stream")
    pr.add_argument("--out", required=True, help="output path stem: writes PATH.csv, PATH.json, PATH.png")
    pr.add_argument("--max-age-ms", type=positive_float, default=None,
                    help="drop frames older than this when their turn comes")
    pr.add_argument("--mode", choices=("reset", "continuous"), default="reset")
    pr.add_argument("--paced", action="store_true",
                    help="read --video at its frame rate, as a camera delivers it (frames the run is too slow for are "
                         "passed over); default: as fast as the run asks, which the profile reports when that is "
                         "faster than real time")
    runtime_args(pr)
    pr.set_defaults(func=cmd_profile)

    d = sub.add_parser("demo", help="export the tiny model (cached) and answer 2 synthetic streams")
    d.add_argument("--dir", help="where to keep the tiny artifact (default: $COBRA_EDGE_CACHE or ~/.cache/cobra-edge)")
    runtime_args(d)
    d.set_defaults(func=cmd_demo)

    b = sub.add_parser("bench", help="side-by-side LM benchmark: ONNX vs PyTorch reference vs transformers (JSON)")
    b.add_argument("--quick", action="store_true", help="a small model: the whole run in under two minutes")
    b.add_argument("--connectors", action="store_true",
                   help="cost of each projector design: tokens, parameters, projector and prefill time (Markdown table)")
    b.add_argument("--presets", nargs="+", help="presets to measure (default: mamba-130m mamba-370m)")
    b.add_argument("--threads", type=positive_int, default=2, help="intra-op threads")
    b.add_argument("--repeats", type=positive_int, default=None, help="timed rounds (default: the benchmark's own)")
    b.add_argument("--before", nargs="+", metavar="PRESET=DIR",
                   help="also time an artifact of the same preset from an earlier cobra-edge, in the same rounds")
    b.add_argument("--without", nargs="+", default=[], choices=("hf", "torch_ref", "onnx_portable", "onnx_steps",
                                                                "session_options"),
                   help="leave these contenders out (transformers and the PyTorch reference hold several GB at B = 8; "
                        "session_options: the session-option comparison, one arena per session)")
    b.add_argument("--out", help="results folder (default: $COBRA_EDGE_CACHE/bench-results, outside the repository; "
                                 "--out bench/results to record a run in it)")
    b.set_defaults(func=cmd_bench)

    t = sub.add_parser("train", help="train the tiny model on the synthetic world (needs the export extra)")
    t.add_argument("--preset", default="tiny-ldp-96", help="tiny-ldp-96 (the embedded model's shape), tiny, or a tiny "
                                                            "connector preset (tiny-ldp, tiny-sva, tiny-mg, tiny-abstractor)")
    t.add_argument("--steps", type=positive_int, default=None,
                   help="question-answering steps (default: the embedded model's recipe, 2000)")
    t.add_argument("--curriculum", action="store_true",
                   help="the fifteen-stage recipe (vision pretraining + questions, motion with large moves, mixed, "
                        "mixed at half the rate twice, questions weighted, presence weighted twice, wider moves, "
                        "1500 motion-weighted steps, then 3000 five times; about 390 min here), the best so far: "
                        "docs/training.md")
    t.add_argument("--seed", type=non_negative_int, default=0, help="seed of the initial weights and of every batch")
    t.add_argument("--out", default=None, help="weights file to write (.safetensors; the record .json and the curve "
                                               ".png beside it; default: $COBRA_EDGE_CACHE/runs/PRESET-seedSEED)")
    t.add_argument("--quick", action="store_true", help="a few small steps: checks the whole path in seconds")
    t.add_argument("--dense-weight", type=float, default=None,
                   help="weight of the dense cell labels on the visual tokens and of the motion labels on the LM's "
                        "later-frame tokens (docs/training.md, 'Dense supervision'; default 0: answers alone)")
    t.add_argument("--early-answer-weight", type=float, default=None,
                   help="weight of the answer also predicted at the question's last word (docs/training.md; default "
                        "0: none)")
    t.add_argument("--recall-weight", type=float, default=None,
                   help="weight of recalling the frame before's cell labels at a motion item's later frames "
                        "(default 0: off; docs/training.md, \"Recalling the frame before\")")
    t.add_argument("--motion-summary-weight", type=float, default=None,
                   help="weight of every shape's move read at a motion item's later frames' last visual token "
                        "(default 0: off; docs/training.md, \"Where motion fails\")")
    t.add_argument("--motion-layer", type=positive_int, default=None, metavar="K",
                   help="read the per-token motion labels (--dense-weight) at the input of LM layer K instead of at "
                        "the final hidden state, so later layers can keep the move for the question (default: the "
                        "final state; docs/training.md, \"Stage 16 trials\")")
    t.add_argument("--keep-dense-head", action="store_true",
                   help="with --init-weights: continue its training-only dense head (W.dense.safetensors beside it) "
                        "instead of a fresh one (default: fresh, as the curriculum's stages were trained)")
    t.add_argument("--pretrain-steps", type=non_negative_int, default=None,
                   help="steps of vision pretraining on dense cell labels before the questions, 64 scenes each "
                        "(default 0; the embedded recipe, --curriculum, uses 3000: docs/training.md)")
    t.add_argument("--init-weights", default=None, metavar="W",
                   help="continue training a checkpoint of cobra-edge train (its .json record beside it) instead of "
                        "starting from fresh weights; its record's minutes count in the new minutes_in_all")
    t.add_argument("--lr", type=float, default=None,
                   help="peak learning rate (default 2e-3; with --heads: the heads', default 1e-3)")
    t.add_argument("--warmup", type=non_negative_int, default=None, help="warm-up steps (default 100)")
    t.add_argument("--motion-from", type=non_negative_int, default=None,
                   help="first step with motion items (default 500: still scenes alone before it)")
    t.add_argument("--scenes", type=non_negative_int, default=None,
                   help="still scenes per step (default 32, 6 questions each; 0: motion items alone)")
    t.add_argument("--motion-items", type=non_negative_int, default=None, help="motion items per step (default 8)")
    t.add_argument("--motion-frames", type=positive_int, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="frames per motion item (default the world's: 2 4)")
    t.add_argument("--motion-speed", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                   help="moving shapes' speed per frame, in widths of the view (default the world's: 0.05 0.09; "
                        "the motion curriculum starts at 0.2 0.3 over 2 frames: docs/training.md)")
    t.add_argument("--motion-moves", nargs="+", default=None, metavar="MOVE=W",
                   help="weigh the moves of the motion items' shapes, e.g. up=2 down=2 still=2 (a move not named: 1; "
                        "default: uniform, as evaluation draws them)")
    t.add_argument("--question-weights", nargs="+", default=None, metavar="FAMILY=W",
                   help="weigh the single-frame families in the still scenes' questions, e.g. presence=3 colour=2 "
                        "(a family not named: 1; default: uniform)")
    t.add_argument("--heads", action="store_true", help="train action heads (bearing, distance, visible, blocked) on "
                   "--weights (default: the embedded model), its backbone frozen, from camera views of the loop's world")
    t.add_argument("--weights", help="with --heads: the trained checkpoint the heads read")
    # --heads options: None takes export/train_heads.py train_heads_file's default (the embedded heads' recipe)
    t.add_argument("--views", type=positive_int, default=None,
                   help="with --heads: training views as reset streams see them (default 48000)")
    t.add_argument("--episodes", type=non_negative_int, default=None,
                   help="with --heads: approach episodes per tick seen as continuous streams (default 224)")
    t.add_argument("--wide-episodes", type=non_negative_int, default=None,
                   help="with --heads: approaches per tick steered further off the target (default 0; docs/loop.md)")
    t.add_argument("--overshoot-episodes", type=non_negative_int, default=None,
                   help="with --heads: approaches per tick that never stop, driving on into the target (default 224)")
    t.add_argument("--approach-ticks", type=float, nargs="+", default=None, metavar="MS",
                   help="with --heads: drive every kind of approach at each of these ticks (default 20 30 40 60 80 "
                        "120: a slower loop's continuous stream sees frames further apart)")
    t.add_argument("--near-weight", type=float, default=None,
                   help="with --heads: draw continuous frames within 0.5 m of the target this many times as often "
                        "(default 4)")
    t.add_argument("--head-dropout", type=float, default=None,
                   help="with --heads: share of the heads' input values zeroed while fitting (default 0)")
    t.add_argument("--head-hidden", type=positive_int, nargs=2, default=None, metavar=("H1", "H2"),
                   help="with --heads: the heads' MLP widths (default 192 96)")
    t.set_defaults(func=cmd_train)

    v = sub.add_parser("eval", help="accuracy per question family through the runtime, beside the PyTorch reference")
    v.add_argument("dir", nargs="?", help="artifact directory (or --preset to train, export and evaluate)")
    v.add_argument("--preset", help="train this tiny preset for --steps, export it, then evaluate it")
    v.add_argument("--steps", type=positive_int, default=None, help="training steps with --preset (default: as 'train')")
    v.add_argument("--precision", nargs="+", default=["fp32", "int8", "fp16"], choices=("fp32", "fp16", "int8"),
                   help="precisions to evaluate (the artifact must hold their variants)")
    v.add_argument("--mode", nargs="+", default=["continuous", "reset"], choices=("reset", "continuous"),
                   help="stream modes to evaluate")
    v.add_argument("--batch", type=positive_int, default=8, help="streams answered together")
    v.add_argument("--path", default="direct", choices=("direct", "scheduler"),
                   help="Runtime.answer directly, or through the FrameScheduler")
    v.add_argument("--per-family", type=positive_int, default=500, help="questions per family")
    v.add_argument("--head-views", type=non_negative_int, default=500,
                   help="held-out camera views for the action heads' error (artifacts with heads; 0: skip)")
    v.add_argument("--seed", type=non_negative_int, default=1000, help="seed of the held-out items (never used in training)")
    v.add_argument("--families", nargs="+", default=None, help="families to ask (default: all six)")
    v.add_argument("--reference", default="auto",
                   help="PyTorch reference weights: auto (from the manifest's weight source), none, or a .safetensors")
    v.add_argument("--threads", type=positive_int, default=2, help="threads of ONNX Runtime and of the reference")
    device_arg(v)
    v.add_argument("--out", default=None, help="results folder (default: bench/results)")
    v.set_defaults(func=cmd_eval)

    from ros_bridge.cli import add_parser as add_ros_parser  # argparse only; ROS libraries load when it runs

    add_ros_parser(sub)
    from .sim.cli import add_parser as add_loop_parser  # the closed-loop simulation (edge/sim)

    add_loop_parser(sub)
    from .serve.cli import add_parser as add_serve_parser  # argparse only; Ray loads when it runs

    add_serve_parser(sub)

    k = sub.add_parser("kernels", help="say whether cobra-edge's fused CPU kernels are built and used here "
                                       "(exit 1 when the portable ONNX bodies run instead)")
    k.set_defaults(func=cmd_kernels)

    i = sub.add_parser("inspect", help="print an artifact's manifest: model, graphs, state bytes, parity")
    i.add_argument("dir")
    i.add_argument("--json", action="store_true", help="print manifest.json as is")
    i.add_argument("--no-verify", action="store_true", help="skip sha256 checks")
    i.set_defaults(func=cmd_inspect)
    for sp in sub.choices.values():  # every subcommand's help shows its defaults
        sp.formatter_class = _DefaultsHelp
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit codes: 0 done; 1 nothing answered (or DDS participants left open); 2 bad options, input or artifact
    (one line naming it); 3 a ros node's inference worker failed; 130 / 143 stopped by SIGINT / SIGTERM."""
    import signal

    args = build_parser().parse_args(argv)
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    raise_on_signals()  # a signal anywhere (loading, exporting) ends the command with a line, not a traceback
    try:
        return args.func(args)
    except (CobraEdgeError, EngineError, ValueError, OSError, MemoryError) as e:
        print(f"cobra-edge {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Interrupted as e:
        print(f"cobra-edge {args.command}: interrupted by {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"cobra-edge {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if threading.current_thread() is threading.main_thread():
            for sig, handler in old.items():
                signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
