"""What the text probes share: a model's generated answers to the first records of one family
of a shapes split, asked as typed (``raw=True``), in batches."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lisa import LisaPipeline


def add_answer_arguments(parser: argparse.ArgumentParser, limit: int) -> None:
    """--model, --split, --limit, --batch-size and --threads (the caller adds --data-dir)."""
    parser.add_argument("--model", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--limit", type=int, default=limit)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", default="auto")


def batched_answers(pipe: LisaPipeline, images: list[str], queries: list[str], batch_size: int) -> list[str]:
    """The model's answer to each (image, query), asked as typed, ``batch_size`` at a time."""
    answers: list[str] = []
    for start in range(0, len(queries), batch_size):
        results = pipe(images[start:start + batch_size], queries[start:start + batch_size], raw=True)
        answers += [result.text for result in results]
    return answers


def generated_answers(args: argparse.Namespace, data_dir: Path, family: str) -> tuple[list[dict], list[str]]:
    """The first ``args.limit`` records of ``data_dir/split/family.jsonl`` and the model's answer to each."""
    split = data_dir / args.split
    records = [json.loads(line) for line in (split / f"{family}.jsonl").open()][: args.limit]
    pipe = LisaPipeline.from_pretrained(args.model, device="cpu", dtype="fp32", threads=args.threads)
    images = [str(split / r["image"]) for r in records]
    return records, batched_answers(pipe, images, [r["query"] for r in records], args.batch_size)
