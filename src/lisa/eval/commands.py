"""``lisa eval``: score a model (generation or teacher-forced) or a folder of predicted masks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lisa.data.names import EVAL_DATASETS
from lisa.threads import add_threads_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval", help="gIoU / cIoU on ReasonSeg, refCOCO family, gRefCOCO or your JSONL data",
        description="Score a model (--model) or precomputed masks (--pred-dir P: one <item id>.png per query, "
                    "or <image stem>.png per single-query image; see docs/data-format.md). Prints "
                    "gIoU (mean per-query IoU) and cIoU (cumulative intersection over cumulative union). "
                    "Under `accelerate launch -m lisa.cli eval ...` each process scores its share and the "
                    "report equals one process's (docs/training.md).",
        epilog="example:\n  lisa shapes generate --out data/shapes --split val --n 20\n"
               "  lisa eval --model lisa-tiny --dataset jsonl --data-dir data/shapes --split val --visualize out/worst")
    add_dataset_arguments(parser)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="model folder (or a shipped name such as lisa-tiny) for LisaPipeline")
    source.add_argument("--pred-dir", type=Path,
                        help="folder of predicted masks <item id>.png (nonzero colour = foreground; alpha ignored)")
    parser.add_argument("--teacher-forced", action="store_true",
                        help='official protocol: the answer "[SEG]." is given instead of generated')
    parser.add_argument("--batch-size", type=int, default=8, help="queries per model call")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="longest generated answer, in tokens (default: 64)")
    parser.add_argument("--device", default=None, help="cuda / cpu / mps (default: cuda when available)")
    parser.add_argument("--dtype", default=None, help="float32 / bfloat16 / float16 (default: the model's)")
    parser.add_argument("--visualize", type=Path, default=None, help="write the worst cases as PNGs (image | target | prediction, with query, answer and IoU) here")
    parser.add_argument("--save-predictions", type=Path, default=None, metavar="DIR",
                        help="with --model: write every predicted mask as DIR/<item id>.png (scores again with --pred-dir)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing non-empty --visualize / --save-predictions folders whole")
    add_threads_argument(parser)
    add_report_arguments(parser)
    parser.set_defaults(run=run_eval)


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """Which items to score (shared by `lisa eval` and `lisa baseline eval`)."""
    parser.add_argument("--dataset", required=True, choices=EVAL_DATASETS,
                        help="the dataset's layout: " + ", ".join(EVAL_DATASETS) + " (jsonl: your own data, docs/data-format.md)")
    parser.add_argument("--data-dir", type=Path, required=True, help="dataset root (see docs/data-format.md)")
    parser.add_argument("--split", default="val", help="val | test | testA | testB | train ... (default val)")
    parser.add_argument("--split-by", default=None, help="refer datasets: unc / umd / google (default as official)")
    parser.add_argument("--all-texts", action="store_true", help="ReasonSeg: every text, not only text[0]")
    parser.add_argument("--names", nargs="+", default=None, help="jsonl: score only these files, e.g. --names referring")
    parser.add_argument("--allow-outside-paths", action="store_true",
                        help="jsonl: accept image / mask paths that are absolute or lead out of the data folder")


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--limit", type=int, default=None, help="score only the first N items")
    parser.add_argument("--out", type=Path, default=None, help="write the report JSON here")
    parser.add_argument("--worst", type=int, default=20, help="how many worst cases to list")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def load_items(args: argparse.Namespace):
    """(the whole dataset, the items to score: its first --limit items)."""
    from lisa.eval.evaluate import load_eval_dataset

    dataset = load_eval_dataset(args.dataset, args.data_dir, args.split, args.all_texts, args.split_by, args.names,
                                args.allow_outside_paths)
    return dataset, (_Head(dataset, args.limit) if args.limit is not None else dataset)


def _pipeline(args: argparse.Namespace, group=None):
    """The model's pipeline, or None when scoring a folder of predicted masks. Under a launcher
    (``group``: Accelerate's PartialState) each process takes its own device (cuda:LOCAL_RANK)."""
    if args.pred_dir is not None:
        if args.teacher_forced:
            from lisa.errors import LisaError

            raise LisaError("--teacher-forced needs --model; --pred-dir scores masks that already exist")
        return None
    from lisa.inference.pipeline import LisaPipeline  # heavy: torch + transformers

    device = args.device
    if group is not None and (device is None or (device == "cuda" and group.device.type == "cuda")):
        device = str(group.device)  # a plain "cuda" would put every process on GPU 0
    kwargs = {k: v for k, v in (("device", device), ("dtype", args.dtype)) if v is not None}
    return LisaPipeline.from_pretrained(args.model, threads=args.threads, **kwargs)


class _Head:
    """The first ``n`` items of a sequence, still lazy."""

    def __init__(self, items, n: int) -> None:
        self.items, self.n = items, min(n, len(items))

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        if not 0 <= i < self.n:
            raise IndexError(i)
        return self.items[i]

    def keys(self):
        from lisa.eval.predictions import dataset_keys

        return dataset_keys(self.items)[: self.n]


def check_args(args: argparse.Namespace) -> None:
    """Refuse bad numbers and unwritable or occupied outputs before any item is scored (or a model loaded)."""
    from lisa.errors import LisaError
    from lisa.output_dir import check_output_dir, check_output_file

    for flag, value, least in (("--batch-size", args.batch_size, 1), ("--limit", args.limit, 0),
                               ("--max-new-tokens", getattr(args, "max_new_tokens", 1), 1), ("--worst", args.worst, 0)):
        if value is not None and value < least:
            raise LisaError(f"{flag} must be at least {least}, got {value}")
    if getattr(args, "save_predictions", None) is not None:
        if args.model is None:
            raise LisaError("--save-predictions needs --model; --pred-dir already is a folder of predictions")
        check_output_dir(args.save_predictions, args.overwrite, "--save-predictions")
    if getattr(args, "visualize", None) is not None:
        check_output_dir(args.visualize, args.overwrite, "--visualize")
    if args.out is not None:
        check_output_file(args.out, "--out")


def _prediction_stage(stack, args: argparse.Namespace, group) -> Path:
    """The staging folder of --save-predictions: the main process makes it (published when the
    ``stack`` closes), every process writes its predictions into it."""
    from lisa.eval.shard import shared_stage
    from lisa.output_dir import staged_output_dir

    stage = None
    if group is None or group.is_main_process:
        stage = stack.enter_context(staged_output_dir(args.save_predictions, args.overwrite, "--save-predictions"))
    return stage if group is None else shared_stage(stage)


def run_eval(args: argparse.Namespace) -> int:
    """Evaluate, print ``gIoU=... cIoU=... n=...``, optionally write the report and pictures.
    Under ``accelerate launch`` each process scores its block of the items (lisa.eval.shard) and
    the main process alone reports and writes."""
    from contextlib import ExitStack

    from lisa.eval.evaluate import evaluate, pipeline_predictor, pred_dir_predictor, saving_predictor
    from lisa.eval.predictions import check_unique_ids, dataset_keys
    from lisa.eval.report import build_report, summary_line, write_report
    from lisa.eval.shard import Block, gather, process_group
    from lisa.eval.visualize import write_case
    from lisa.output_dir import staged_output_dir

    check_args(args)
    group = process_group()
    main = group is None or group.is_main_process
    dataset, items = load_items(args)
    text_only = list(getattr(dataset, "text_only", []))[: args.limit]
    if text_only and args.model is None and main:
        print(f"note: {len(text_only)} text-only record(s) need --model for answer accuracy; not evaluated", file=sys.stderr)
    if args.save_predictions is not None:
        check_unique_ids(dataset_keys(items))
    pipe = _pipeline(args, group)
    if pipe is None:
        predict = pred_dir_predictor(args.pred_dir, dataset)
    else:
        predict = pipeline_predictor(pipe, args.teacher_forced, args.max_new_tokens)
    keep = args.worst if args.visualize else 0
    mine = items if group is None else Block(items, group.process_index, group.num_processes)
    with ExitStack() as stack:  # the predictions folder appears whole, once every item is scored
        if args.save_predictions is not None:
            predict = saving_predictor(predict, _prediction_stage(stack, args, group))
        results, keeper = evaluate(mine, predict, args.batch_size, keep, progress=main and not args.no_progress)
        if group is not None:
            results, keeper = gather(results, keeper)
            group.wait_for_everyone()  # every process's predictions are written before the folder is published
            group.destroy_process_group()  # before exit: gloo's threads abort an interpreter that leaves them running
    if not main:
        return 0
    mode = "pred_dir" if args.pred_dir else ("teacher_forced" if args.teacher_forced else "generate")
    info = {"dataset": args.dataset, "split": args.split, "mode": mode,
            "source": str(args.pred_dir or args.model), "all_texts": args.all_texts, "names": args.names}
    report = build_report(results, info, args.worst) if len(items) else {"n": 0, "info": info}
    if text_only and pipe is not None:
        from lisa.eval.answers import answer_accuracy

        report["answers"] = answer_accuracy(pipe, text_only, args.batch_size, args.max_new_tokens)
        print(f"answer accuracy={report['answers']['accuracy']:.4f} n={report['answers']['n']}")
    if args.out:
        write_report(report, args.out)
    if args.visualize:
        answers = {score.item_id: score.answer for score in results.items}
        with staged_output_dir(args.visualize, args.overwrite, "--visualize") as stage:
            for rank, (item, pred, iou) in enumerate(keeper.cases()):
                write_case(stage, rank, item.item_id, iou, item.image, item.target, pred,
                           item.query, answers.get(item.item_id))
    if len(items):
        print(summary_line(report))
    return 0
