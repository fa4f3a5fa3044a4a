"""The `lisa` command line: one sub-command per job, each registered by the layer that owns it.

Each module in COMMAND_MODULES exposes ``register(subparsers)``; heavy imports (torch,
transformers) stay inside the command functions so that ``lisa --help`` is fast.

Errors: a bad input (a ``LisaError``, a bad flag, a missing / unreadable / unwritable file, a
full disk) is answered with ONE line ``error: ...`` on stderr and exit code 2, without a
traceback. Anything else is a bug: one line naming the exception, a hint to rerun with
``--debug`` (which prints the traceback, anywhere on the command line), exit code 1.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import traceback
from typing import NoReturn

from lisa.errors import LisaError

COMMAND_MODULES = (
    "lisa.inference.commands",  # segment, chat, tiny-model
    "lisa.eval.commands",  # eval
    "lisa.data.commands",  # data check
    "lisa.data.shapes.commands",  # shapes generate
    "lisa.train.commands",  # train, export, plot
    "lisa.interop.commands",  # convert official, convert sam, init, fixtures official
    "lisa.baselines.commands",  # baseline train, baseline eval
    "lisa.serve.commands",  # serve api, serve web
)
USAGE_ERROR = 2  # bad input: flags, files, values (argparse's own code for usage errors)
INTERNAL_ERROR = 1  # a bug: please report it
DEBUG_FLAG = "--debug"


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one ``error:`` line naming the command, not a usage dump."""

    def error(self, message: str) -> NoReturn:
        print(f"error: {self.prog}: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(USAGE_ERROR)


def build_parser() -> argparse.ArgumentParser:
    from lisa import __version__

    parser = OneLineParser(
        prog="lisa", description="Reasoning segmentation with LISA: an image and a free-form query in, "
                                 "an answer and masks out. `lisa COMMAND --help` explains each command.",
        epilog='example:\n  lisa segment examples/umbrella.jpg "What in this picture would keep you dry in the rain?"')
    parser.add_argument("--version", action="version", version=f"lisa {__version__}")
    parser.add_argument(DEBUG_FLAG, action="store_true",
                        help="show the full traceback of an error (accepted anywhere on the command line)")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    for command in _all_parsers(parser):
        command.formatter_class = HelpFormatter
    return parser


class HelpFormatter(argparse.HelpFormatter):
    """Wraps one-line paragraphs; keeps paragraphs written on several lines (examples) as they are."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        paragraphs = text.strip().split("\n\n")
        return "\n\n".join(
            "\n".join(indent + line for line in paragraph.splitlines()) if "\n" in paragraph
            else super(HelpFormatter, self)._fill_text(paragraph, width, indent)
            for paragraph in paragraphs
        )


def _all_parsers(parser: argparse.ArgumentParser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                yield from _all_parsers(child)


def one_line(text: str) -> str:
    """Collapse a multi-line message so that the error is exactly one line."""
    return " ".join(part.strip() for part in str(text).splitlines() if part.strip())


def os_error_message(error: OSError) -> str | None:
    """The one-line message of an expected OS error (file missing, no permission, disk full), else None."""
    name = error.filename if error.filename is not None else "a file"
    reason = error.strerror or str(error)
    if isinstance(error, FileNotFoundError):
        return f"{name} not found ({reason}); check the path"
    if isinstance(error, PermissionError):
        return f"permission denied for {name} ({reason}); choose a path you may read / write, or fix its permissions"
    if isinstance(error, IsADirectoryError):
        return f"{name} is a folder, but a file was expected; give a file path"
    if isinstance(error, NotADirectoryError):
        return f"{name} (or a folder above it) is a file, but a folder was expected; give a folder path"
    if isinstance(error, FileExistsError):
        return f"{name} already exists; remove it or choose another path"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the device while writing {name}; free some space or write elsewhere"
    if error.errno in (errno.EROFS, errno.EPERM, errno.EACCES):
        return f"cannot write {name} ({reason}); choose a writable folder"
    if error.errno == errno.ENAMETOOLONG:
        return f"the path {name} is too long; choose a shorter one"
    return None


def report(error: BaseException) -> int:
    """Print the one-line message of ``error`` and return the exit code."""
    if isinstance(error, LisaError):
        print(f"error: {one_line(str(error))}", file=sys.stderr)
        return USAGE_ERROR
    if isinstance(error, OSError) and (message := os_error_message(error)) is not None:
        print(f"error: {one_line(message)}", file=sys.stderr)
        return USAGE_ERROR
    if isinstance(error, MemoryError):
        print("error: out of memory; try a smaller input, batch or model (rerun with --debug for the traceback)",
              file=sys.stderr)
        return INTERNAL_ERROR
    detail = one_line(str(error)) or "no message"
    print(f"error: unexpected {type(error).__name__}: {detail} (a bug: rerun with --debug for the traceback "
          "and report it)", file=sys.stderr)
    return INTERNAL_ERROR


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    argv = [arg for arg in argv if arg != DEBUG_FLAG]
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `lisa data check | head`: the reader left, nothing to report
        return 0
    except Exception as error:  # noqa: BLE001 - the one place every failure is turned into a line
        if debug:
            traceback.print_exc()
        return report(error)


def exit_process(code: int) -> None:
    """Leave with ``code``. A worker of a many-process launch (``accelerate launch -m lisa.cli``)
    leaves at once once its output is flushed: its work and files are complete by then, and the
    interpreter's teardown of gloo's threads can abort it (std::terminate, "terminate called
    without an active exception"; seen about once in ten 2-process runs on CPU), which makes the
    launcher kill the other processes mid-write."""
    from lisa.processes import world_size

    if world_size() > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    exit_process(main())
