"""`lisa convert official` shows a bar by shard and tensor on a terminal, and is quiet otherwise."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from lisa.interop.fixtures import write_tiny_official

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "COLUMNS": "120"}


def _convert(tiny, out: Path, *extra: str, terminal: bool) -> tuple[int, str]:
    argv = [sys.executable, "-m", "lisa.cli", "convert", "official", "--src", str(tiny.directory),
            "--vision-tower", str(tiny.clip_dir), "--out", str(out), *extra]
    if not terminal:
        done = subprocess.run(argv, capture_output=True, text=True, env=ENV, timeout=300)
        return done.returncode, done.stderr
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))  # a 160-column terminal
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=slave, env=ENV)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    return process.wait(timeout=300), b"".join(chunks).decode(errors="replace")


@pytest.mark.slow  # conversions in subprocesses under a pseudo-terminal
@pytest.mark.slow  # two fresh interpreters, one on a pseudo-terminal
def test_progress_bar_on_a_terminal_only(tmp_path) -> None:
    tiny = write_tiny_official(tmp_path / "src", shards=3, fmt="bin")
    code, shown = _convert(tiny, tmp_path / "tty", terminal=True)
    assert code == 0, shown
    assert "shard 1/4 pytorch_model-00001-of-00003.bin" in shown and "shard 4/4 model.safetensors" in shown
    assert "100%" in shown  # ends at the checkpoint's size
    code, quiet = _convert(tiny, tmp_path / "pipe", terminal=False)
    assert code == 0 and "shard" not in quiet, quiet


def test_no_progress_silences_the_bar_on_a_terminal(monkeypatch) -> None:
    from lisa.interop.official import _shard_bar

    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert not _shard_bar(100, progress=True).disable
    assert _shard_bar(100, progress=False).disable
