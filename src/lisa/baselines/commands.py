"""``lisa baseline train`` and ``lisa baseline eval``: the text-prompt SAM baseline (no LLM)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lisa.eval.commands import add_dataset_arguments, add_report_arguments
from lisa.threads import add_threads_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("baseline", help="a baseline without an LLM: text encoder -> SAM mask decoder",
                                   description="Train or score the text-prompt SAM baseline.",
                                   epilog="example:\n  lisa baseline train --config configs/tiny-shapes/baseline.yaml")
    commands = parser.add_subparsers(dest="baseline_command", required=True, metavar="COMMAND")

    train = commands.add_parser(
        "train", help="train on explicit (non-reasoning) queries",
        description="Train the no-LLM baseline of the results table: a small text encoder whose output prompts "
                    "SAM's mask decoder, on the explicit (semantic and referring) queries only.",
        epilog="example:\n  lisa baseline train --config configs/tiny-shapes/baseline.yaml")
    train.add_argument("--config", type=Path, required=True, help="e.g. configs/tiny-shapes/baseline.yaml")
    train.add_argument("--resume", action="store_true", help="continue from the run's latest checkpoint")
    add_threads_argument(train, "CPU threads for torch; a number overrides the config's `threads` "
                                "(default auto: the config's `threads`)")
    train.set_defaults(run=run_train)

    score = commands.add_parser(
        "eval", help="gIoU / cIoU, as `lisa eval`, of a trained baseline",
        description="Score a trained baseline on the same items and metrics as `lisa eval`.",
        epilog="example:\n  lisa baseline eval --model runs/baseline/model --dataset jsonl --data-dir data/shapes --split test")
    score.add_argument("--model", type=Path, required=True, help="a baseline folder (RUN_DIR/model)")
    add_dataset_arguments(score)
    score.add_argument("--batch-size", type=int, default=16, help="queries per model call")
    score.add_argument("--device", default="cpu", help="cpu / cuda (default cpu)")
    add_threads_argument(score)
    add_report_arguments(score)
    score.set_defaults(run=run_baseline_eval)


def run_train(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from lisa.baselines.train import load_config, train_baseline
    from lisa.threads import parse_threads

    config = load_config(args.config)
    config = replace(config, threads=parse_threads(args.threads) or config.threads)
    model_dir = train_baseline(config, resume=args.resume)
    print(f"baseline model written to {model_dir}")
    return 0


def run_baseline_eval(args: argparse.Namespace) -> int:
    """Score the baseline like `lisa eval`: same items, metrics, report and summary line."""
    from lisa.baselines.text_sam import baseline_predictor
    from lisa.errors import LisaError
    from lisa.eval.commands import check_args, load_items
    from lisa.eval.evaluate import evaluate
    from lisa.eval.report import build_report, summary_line, write_report
    from lisa.threads import set_threads

    set_threads(args.threads)  # like `lisa eval`: auto leaves the busy cores to others
    check_args(args)
    dataset, items = load_items(args)
    if not len(items):
        raise LisaError(f"nothing to score in {args.data_dir} ({args.split})")
    skipped = getattr(dataset, "skipped_text_only", 0)
    if skipped and not args.names:
        print(f"note: {skipped} text-only record(s) have no mask to score and are not evaluated", file=sys.stderr)
    predict = baseline_predictor(args.model, args.device)
    results, _ = evaluate(items, predict, args.batch_size, 0, progress=not args.no_progress)
    info = {"dataset": args.dataset, "split": args.split, "mode": "baseline_text_sam", "source": str(args.model),
            "all_texts": args.all_texts, "names": args.names}
    report = build_report(results, info, args.worst)
    if args.out:
        write_report(report, args.out)
    print(summary_line(report))
    return 0
