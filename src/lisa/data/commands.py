"""``lisa data check DIR``: validate a users' data folder (docs/data-format.md)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="inspect and validate datasets", description="Inspect and validate datasets.",
                                 epilog="example:\n  lisa data check data/mine")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    check = data_sub.add_parser(
        "check", help="validate a folder of *.jsonl records; list every problem",
        description="Read every record of a JSONL data folder (docs/data-format.md) and print each problem "
                    "with its file and line; exits 1 when there is an error.",
        epilog="example:\n  lisa data check data/shapes --split val")
    check.add_argument("dir", type=Path, help="folder holding *.jsonl files (or DIR/<split>/ with --split)")
    check.add_argument("--split", default=None, help="check DIR/<split>/ instead of DIR")
    check.add_argument("--allow-outside-paths", action="store_true",
                       help="accept image / mask paths that are absolute or lead out of the data folder with ..")
    check.set_defaults(run=run_check)


def run_check(args: argparse.Namespace) -> int:
    """Print every problem, one per line, then a summary; exit 1 when there is an error."""
    from lisa.data.check import check_folder

    report = check_folder(args.dir, args.split, args.allow_outside_paths)
    for problem in report.problems:
        print(problem)
    kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(report.kinds.items())) or "no valid records"
    n_err, n_warn = len(report.errors), len(report.problems) - len(report.errors)
    print(f"{report.files} file(s): {kinds}; {n_err} error(s), {n_warn} warning(s)")
    return 1 if n_err else 0
