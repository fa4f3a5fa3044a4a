"""``lisa train``, ``lisa export`` and ``lisa plot`` (heavy imports stay inside the run functions)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lisa.threads import add_threads_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="fine-tune LISA (LoRA + mask decoder) from a YAML config",
        description="One CPU / one GPU: `lisa train --config C`. Several GPUs, DeepSpeed ZeRO-2 or FSDP: "
                    "`accelerate launch --config_file configs/accelerate/multi_gpu.yaml -m lisa.cli train --config C` "
                    "(deepspeed_zero2.yaml, fsdp.yaml, multi_cpu.yaml; see docs/training.md).",
        epilog="example:\n  lisa train --config configs/smoke.yaml --run-dir runs/smoke --no-progress")
    train.add_argument("--config", type=Path, required=True, help="YAML recipe, e.g. configs/smoke.yaml")
    train.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    train.add_argument("--run-dir", default=None, help="override the config's run_dir")
    train.add_argument("--max-steps", type=int, default=None, help="override optim.max_steps")
    train.add_argument("--no-progress", action="store_true", help="no progress bar (the JSONL log is still written)")
    add_threads_argument(train, "CPU threads for torch; a number overrides the config's `threads` (default auto: "
                                "the config's `threads` if set, else $OMP_NUM_THREADS, else the free cores, at most 4)")
    train.set_defaults(run=run_train)

    export = subparsers.add_parser(
        "export", help="merge a run's LoRA and write a standalone model folder",
        description="The folder loads with LisaPipeline.from_pretrained / `lisa segment --model`.",
        epilog="example:\n  lisa export --run runs/smoke --out models/smoke && lisa segment --model models/smoke examples/umbrella.jpg \"the umbrella\"")
    export.add_argument("--run", dest="run_folder", type=Path, required=True, help="the training run folder")
    export.add_argument("--out", type=Path, required=True, help="where to write the model")
    export.add_argument("--checkpoint", default="last", help="last | best | a checkpoint folder (default last)")
    export.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out folder whole")
    export.set_defaults(run=run_export)

    plot = subparsers.add_parser(
        "plot", help="training curves of a run as a PNG (loss terms, learning rate, validation metrics)",
        description="Read RUN/log.jsonl, which every `lisa train` / `lisa baseline train` run writes, and draw "
                    "each loss term, the learning rate and each validation metric over steps (matplotlib).",
        epilog="example:\n  lisa plot runs/smoke --out runs/smoke/curves.png")
    plot.add_argument("run_folder", metavar="RUN", type=Path, help="a run folder (its log.jsonl) or a log.jsonl file")
    plot.add_argument("--out", type=Path, default=None, help="the PNG to write (default: RUN/curves.png)")
    plot.set_defaults(run=run_plot)


def run_plot(args: argparse.Namespace) -> int:
    from lisa.train.plot import find_log, plot_curves, read_curves

    log = find_log(args.run_folder)
    curves = read_curves(log)
    out = args.out or log.parent / "curves.png"
    plot_curves(curves, out, title=str(log.parent))
    note = f" ({curves.skipped_lines} unreadable log line(s) skipped)" if curves.skipped_lines else ""
    print(f"curves written to {out}{note}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from lisa.train.config import load_config
    from lisa.processes import is_first_process
    from lisa.train.sam_pretrain import is_sam_stage, load_stage_config, train_sam
    from lisa.train.trainer import train
    from lisa.threads import parse_threads, set_threads

    if is_sam_stage(args.config):  # stage 1 of a from-scratch model: SAM alone
        stage = load_stage_config(args.config)
        stage.run_dir = args.run_dir or stage.run_dir
        stage.max_steps = args.max_steps or stage.max_steps
        stage.threads = parse_threads(args.threads) or stage.threads  # the stage sets this count itself
        print(f"CPU threads: {set_threads(stage.threads)}", file=sys.stderr)
        print(f"SAM written to {train_sam(stage, resume=args.resume)}")
        return 0
    overrides = {"run_dir": args.run_dir, "optim.max_steps": args.max_steps, "threads": parse_threads(args.threads)}
    config = load_config(args.config, overrides)  # checked first
    threads = set_threads(config.threads)  # the trainer sets config.threads again: one count, never two
    first = is_first_process()  # under a launcher, one process speaks for all
    if first:
        print(f"CPU threads: {threads}", file=sys.stderr)
    run_dir = train(config, resume=args.resume, progress=not args.no_progress)
    if first:
        print(f"run folder: {run_dir}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from lisa.output_dir import check_output_dir, staged_output_dir
    from lisa.train.export import export

    check_output_dir(args.out, args.overwrite)
    with staged_output_dir(args.out, args.overwrite) as stage:
        export(args.run_folder, stage, args.checkpoint)
    print(f"model written to {args.out}")
    return 0
