"""The workstation's commands, which need the export extra (torch): export, train, eval, bench.

Each loads export/ (or bench/) only when it runs, so ``cobra-edge --help`` and the robot's commands never import
torch (tests/test_no_torch.py).
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path

from .embedded import default_cache_dir
from .embedded import need_export as _need_export


def cmd_export(args) -> int:
    export_cli = _need_export()  # its errors (CheckpointError is a ValueError) are reported by main()
    from export.errors import ParityError

    try:
        return _export(export_cli, args)
    except ParityError as e:  # of the graphs or of a precision variant: a line, not a traceback
        print(f"cobra-edge export: error: parity check failed: {e}", file=sys.stderr)
        return 2


def _export(export_cli, args) -> int:
    if args.trained or args.weights:
        if args.checkpoint or args.preset:
            raise ValueError("--trained / --weights export a checkpoint of cobra-edge train; not with --checkpoint or --preset")
        result = export_cli.export_trained(args.out, args.weights, overwrite=args.overwrite, precisions=args.precision,
                                           heads=args.heads, keep_float=args.keep_float)
    elif args.checkpoint:
        result = export_cli.export_checkpoint(args.checkpoint, args.out, args.vision_weights, args.preset,
                                              args.tokenizer, overwrite=args.overwrite, precisions=args.precision,
                                              heads=args.heads, keep_float=args.keep_float)
    elif args.vision_weights or args.tokenizer:
        raise ValueError("--vision-weights and --tokenizer go with --checkpoint")
    else:
        result = export_cli.export_preset(args.preset or "tiny", args.out, seed=args.seed, overwrite=args.overwrite,
                                          precisions=args.precision, heads=args.heads, keep_float=args.keep_float)
    print(f"wrote {result.out_dir}")
    for graph, outputs in result.parity.items():
        worst = max(outputs.values(), key=lambda v: v["max_abs_err"])["max_abs_err"]  # export refuses NaN
        print(f"  {graph:<10} max |onnx - torch| = {worst:.2e}")
    return 0


def cmd_bench(args) -> int:
    """The LM benchmark (bench/lm.py), or with --connectors the connector cost table (bench/connectors.py)."""
    _need_export()
    if not args.connectors:
        try:
            import transformers  # noqa: F401  (the benchmark's Hugging Face contender)
        except ImportError:
            raise SystemExit("cobra-edge bench: the LM benchmark compares against Hugging Face transformers, which is not "
                             "installed: pip install -c constraints.txt '.[export,bench]'  (--connectors needs no transformers)")
    from bench import connectors, lm

    module, options = (connectors, connectors.ConnectorOptions) if args.connectors else (lm, lm.BenchOptions)
    extra = {"threads": args.threads or 2}
    opts = options.quick_options(**extra) if args.quick else options(**extra)
    if args.presets and not args.connectors:
        opts.presets = tuple(args.presets)
    if args.repeats:
        opts.repeats = args.repeats
    if args.before and not args.connectors:
        opts.before = dict(item.split("=", 1) for item in args.before)
    if args.without and not args.connectors:
        opts.without = tuple(args.without)
    out = Path(args.out) if args.out else default_cache_dir() / "bench-results"
    doc, path = module.run(opts, out, say=lambda m: print(m, file=sys.stderr, flush=True))
    print(module.format_table(doc))
    print(f"\nwrote {path}")
    return 0


def cmd_train(args) -> int:
    _need_export()
    if args.heads:
        from export.train_heads import train_heads_file

        out = args.out or str(default_cache_dir() / "runs" / "heads" / "tiny-heads.safetensors")
        given = {k: v for k, v in (("views", args.views), ("episodes", args.episodes),
                                   ("wide_episodes", args.wide_episodes),
                                   ("overshoot_episodes", args.overshoot_episodes), ("ticks", args.approach_ticks),
                                   ("near_weight", args.near_weight), ("dropout", args.head_dropout),
                                   ("head_hidden", tuple(args.head_hidden) if args.head_hidden else None),
                                   ("lr", args.lr), ("steps", args.steps))
                 if v is not None}
        if args.quick:  # a few of each, at one tick (None: the plain 20 ms) unless told
            given.update(views=64, episodes=2, wide_episodes=min(given.get("wide_episodes", 0), 1),
                         overshoot_episodes=min(given.get("overshoot_episodes", 1), 1),
                         ticks=given.get("ticks"), steps=given.get("steps", 20))
        train_heads_file(args.weights, out, seed=args.seed, say=lambda m: print(m, flush=True), **given)
        print(f"export with them: cobra-edge export --weights MODEL --heads {out} --out artifacts/with-heads")
        return 0
    from export.train import TrainOptions, train

    given = {k: v for k, v in (("steps", args.steps), ("dense_weight", args.dense_weight),
                               ("pretrain_steps", args.pretrain_steps),
                               ("early_answer_weight", args.early_answer_weight),
                               ("recall_weight", args.recall_weight),
                               ("motion_summary_weight", args.motion_summary_weight),
                               ("motion_layer", args.motion_layer),
                               ("init_weights", args.init_weights), ("lr", args.lr), ("warmup", args.warmup),
                               ("motion_from", args.motion_from),
                               ("keep_dense_head", args.keep_dense_head or None)) if v is not None}
    data = {k: v for k, v in (("scenes", args.scenes), ("sequences", args.motion_items),
                              ("motion_frames", tuple(args.motion_frames) if args.motion_frames else None),
                              ("motion_speed", tuple(args.motion_speed) if args.motion_speed else None),
                              ("question_weights", _question_weights(args.question_weights)),
                              ("motion_moves", _move_weights(args.motion_moves))) if v is not None}
    if data:
        from export.train_data import DataRecipe

        base = TrainOptions.quick().recipe if args.quick else DataRecipe()
        given["recipe"] = DataRecipe(**{**asdict(base), **data})
        given["recipe"].motion_range()  # a bad range is an error now, not in the data worker
    out = Path(args.out) if args.out else default_cache_dir() / "runs" / f"{args.preset}-seed{args.seed}" / f"{args.preset}.safetensors"
    if args.curriculum:  # the staged recipe in one command (export/train_recipe.py)
        if given:
            raise ValueError(f"--curriculum runs its own stages' options; not with {sorted(given)}")
        from export.train_recipe import CURRICULUM, train_stages

        train_stages(CURRICULUM, out, preset=args.preset, seed=args.seed, quick=args.quick,
                     say=lambda m: print(m, flush=True))
    else:  # one stage: TrainOptions' defaults (the embedded default's recipe) with what was given
        opts = (TrainOptions.quick if args.quick else TrainOptions)(preset=args.preset, seed=args.seed, **given)
        train(opts, out, say=lambda m: print(m, flush=True))
    print(f"export it: cobra-edge export --weights {out} --out artifacts/{args.preset}-trained --precision int8 fp16")
    return 0


def _question_weights(given: list[str] | None) -> tuple[float, ...] | None:
    """["presence=3", "colour=2"] -> the weights in SINGLE_FRAME order (edge.world.question_weights); a term that is
    not FAMILY=NUMBER is an error that names it."""
    from .world import question_weights

    return _named_weights(given, "--question-weights", "FAMILY=WEIGHT (e.g. presence=3)", question_weights)


def _move_weights(given: list[str] | None) -> tuple[float, ...] | None:
    """["up=2", "still=2"] -> the moves' weights in edge.world.spec.MOTIONS order (edge.world.move_weights); a term
    that is not MOVE=NUMBER is an error that names it."""
    from .world import move_weights

    return _named_weights(given, "--motion-moves", "MOVE=WEIGHT (e.g. still=2)", move_weights)


def _named_weights(given: list[str] | None, option: str, form: str, convert) -> tuple[float, ...] | None:
    if not given:
        return None
    pairs = {}
    for term in given:
        name, _, value = term.partition("=")
        try:
            pairs[name] = float(value)
        except ValueError:  # no "=", or no number after it
            raise ValueError(f"{option}: {term!r} is not {form}") from None
    return convert(pairs)


def cmd_eval(args) -> int:
    _need_export()
    from export.evaluate import RESULTS_DIR, EvalOptions, run_eval, train_then_eval
    from export.train import TrainOptions

    if bool(args.dir) == bool(args.preset):
        raise ValueError("give an artifact directory or --preset (to train, export and evaluate it), not both")
    opts = EvalOptions(precisions=tuple(dict.fromkeys(args.precision)), modes=tuple(dict.fromkeys(args.mode)),
                       batch=args.batch, path=args.path, per_family=args.per_family, seed=args.seed,
                       reference=args.reference, threads=args.threads, device=args.device, head_views=args.head_views,
                       **({"families": tuple(args.families)} if args.families else {}))
    out = Path(args.out) if args.out else RESULTS_DIR
    say = lambda m: print(m, flush=True)  # noqa: E731
    if args.preset:
        doc, path = train_then_eval(args.preset, args.steps or TrainOptions().steps, opts,
                                    default_cache_dir() / "runs", out, say=say)
    else:
        doc, path = run_eval(args.dir, opts, out, say=say)
    from export.evaluate import markdown

    print()
    print(markdown(doc))
    print(f"\nwrote {path} and {path.with_suffix('.md')}")
    return 0
