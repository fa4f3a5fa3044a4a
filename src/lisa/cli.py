"""The `lisa` command line: one sub-command per job, each registered by the layer that owns it.

Each module in COMMAND_MODULES exposes ``register(subparsers)``; heavy imports (torch,
transformers) stay inside the command functions so that ``lisa --help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from lisa.errors import LisaError

COMMAND_MODULES = (
    "lisa.inference.commands",  # segment, chat, bench
    "lisa.eval.commands",  # eval
    "lisa.data.commands",  # data check
    "lisa.data.shapes.commands",  # shapes generate
    "lisa.train.commands",  # train, export
    "lisa.interop.commands",  # convert, init
    "lisa.baselines.commands",  # baseline train, baseline eval
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lisa", description="Reasoning segmentation with LISA.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except LisaError as error:  # clear message, no traceback
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
