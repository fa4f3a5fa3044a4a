"""Every command explains each of its arguments and shows an example; `lisa --version`."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

import lisa
from lisa.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(command path, parser) for every leaf command, walking nested sub-commands."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path, parser
        return
    for action in subs:
        for name, child in action.choices.items():
            yield from _commands(child, path + (name,))


COMMANDS = list(_commands(build_parser()))


def test_the_walk_finds_the_commands() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"segment", "chat", "eval", "train", "convert official", "convert sam", "tiny-model"} <= names


@pytest.mark.parametrize(("path", "parser"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_every_argument_has_help_and_the_command_an_example(path, parser) -> None:
    missing = [a.dest for a in parser._actions
               if not isinstance(a, argparse._HelpAction) and not (a.help and a.help.strip())]
    assert not missing, f"lisa {' '.join(path)}: arguments without help: {missing}"
    assert parser.description, f"lisa {' '.join(path)} has no description"
    assert parser.epilog and "example" in parser.epilog and f"lisa {' '.join(path)}" in parser.epilog, \
        f"lisa {' '.join(path)} --help shows no example"


def test_version() -> None:
    done = subprocess.run([sys.executable, "-m", "lisa.cli", "--version"], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "src")}, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == f"lisa {lisa.__version__}"


def test_help_shows_the_example(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["segment", "--help"])
    out = capsys.readouterr().out
    assert "example:" in out and 'lisa segment examples/diamond.jpg "the grey diamond"' in out
