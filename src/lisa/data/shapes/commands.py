"""`lisa shapes generate`: write one split of the synthetic shapes world to disk."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lisa.errors import LisaError

SPLITS = ("train", "val", "test")
MIN_SIZE, MAX_SIZE = 128, 2048  # below 128 px the smallest shapes get under ~15 px


def register(subparsers: Any) -> None:
    shapes = subparsers.add_parser("shapes", help="the synthetic shapes world", description="The synthetic shapes world lisa-tiny is trained on.",
                                   epilog="example:\n  lisa shapes generate --out data/shapes --split val")
    actions = shapes.add_subparsers(dest="shapes_command", required=True, metavar="ACTION")
    gen = actions.add_parser(
        "generate", help="write one split: images, queries, facts",
        description="Write OUT/SPLIT/: scene images and JSONL records (semantic, referring, absent-object, VQA and "
                    "reasoning queries with exact masks), plus the world-knowledge corpus. Test reasoning uses "
                    "facts that no training segmentation sample contains.",
        epilog="example:\n  lisa shapes generate --out data/shapes --split test --n 200")
    gen.add_argument("--out", required=True, type=Path, help="dataset root; writes OUT/SPLIT/")
    gen.add_argument("--split", required=True, help="train, val or test")
    gen.add_argument("--n", type=int, default=None, help="scenes (default 2000 train, 200 val/test)")
    gen.add_argument("--seed", type=int, default=0, help="same seed -> byte-identical files")
    gen.add_argument("--size", type=int, default=256, help="image side in pixels")
    gen.add_argument("--overwrite", action="store_true", help="replace an existing non-empty OUT/SPLIT/ whole")
    gen.add_argument("--max-objects", type=int, default=8,
                     help="at most this many objects per scene (1-8; fewer: an easier world for a curriculum)")
    gen.set_defaults(run=run_generate)


def check_args(args: argparse.Namespace) -> None:
    if args.split not in SPLITS:
        raise LisaError(f"--split must be one of {', '.join(SPLITS)}, not {args.split!r}")
    if args.n is not None and args.n < 1:
        raise LisaError(f"--n must be at least 1 scene, got {args.n}")
    if not MIN_SIZE <= args.size <= MAX_SIZE:
        raise LisaError(f"--size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {args.size}")
    if not 1 <= args.max_objects <= 8:
        raise LisaError(f"--max-objects must be between 1 and 8, got {args.max_objects}")
    if args.seed < 0:
        raise LisaError(f"--seed must be a non-negative integer, got {args.seed}")
    if args.out.exists() and not args.out.is_dir():
        raise LisaError(f"--out {args.out} is a file; give a folder to write the dataset into")
    from lisa.output_dir import check_output_dir

    check_output_dir(args.out / args.split, args.overwrite, "--out")


def run_generate(args: argparse.Namespace) -> int:
    check_args(args)
    from lisa.data.shapes.generate import DEFAULT_N, generate_split  # numpy, cv2: load late
    from lisa.output_dir import staged_output_dir

    n = args.n if args.n is not None else DEFAULT_N[args.split]
    with staged_output_dir(args.out / args.split, args.overwrite, "--out") as stage:  # no half-written split
        meta = generate_split(args.out, args.split, n, args.seed, args.size, args.max_objects,
                             split_dir=stage)
    counts = ", ".join(f"{k} {v}" for k, v in meta["counts"].items() if not k.startswith("objects_"))
    print(f"wrote {n} {args.split} scenes to {args.out / args.split} in {meta['seconds']} s ({counts})")
    return 0
