"""The CLI's error contract: one ``error:`` line, exit 2 for bad input, no traceback unless --debug."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lisa import cli
from lisa.errors import LisaError

SRC = str(Path(__file__).resolve().parents[1] / "src")


def run_lisa(*args: str, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m lisa.cli ARGS`` in a real subprocess (this checkout's sources first)."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "lisa.cli", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=timeout)


def assert_one_error_line(result: subprocess.CompletedProcess, *fragments: str, code: int = 2) -> str:
    """Exit ``code``, no traceback, exactly one stderr line starting with ``error:``; returns it."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_unknown_flag_is_one_line_naming_the_command() -> None:
    result = run_lisa("data", "check", "--no-such-flag", "x")
    line = assert_one_error_line(result, "unrecognized arguments: --no-such-flag", "--help")
    assert "usage:" not in result.stderr, line


@pytest.mark.slow  # several fresh interpreters
def test_lisa_error_is_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert_one_error_line(run_lisa("data", "check", str(missing)), str(missing))
    debug = run_lisa("data", "check", str(missing), "--debug")
    assert debug.returncode == 2 and "Traceback" in debug.stderr and "error: " in debug.stderr.splitlines()[-1]


@pytest.mark.parametrize(("error", "fragment", "code"), [
    (LisaError("bad\nthing"), "error: bad thing", 2),
    (FileNotFoundError(errno.ENOENT, "No such file", "/x/y.png"), "/x/y.png not found", 2),
    (PermissionError(errno.EACCES, "Permission denied", "/root/z"), "permission denied for /root/z", 2),
    (OSError(errno.ENOSPC, "No space left on device", "/full/m.safetensors"), "no space left", 2),
    (OSError(errno.EROFS, "Read-only file system", "/ro/out"), "cannot write /ro/out", 2),
    (RuntimeError("boom"), "unexpected RuntimeError: boom (a bug: rerun with --debug", 1),
])
def test_errors_are_mapped_to_one_line(error, fragment, code, monkeypatch, capsys) -> None:
    def fail(args):
        raise error

    parser = cli.build_parser()
    args = parser.parse_args(["data", "check", "x"])
    args.run = fail
    monkeypatch.setattr(cli, "build_parser", lambda: type("P", (), {"parse_args": lambda self, argv: args})())
    assert cli.main(["data", "check", "x"]) == code
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error:") and fragment in err, err
