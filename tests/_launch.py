"""Start `lisa` commands in 1 process, or in 2 through `accelerate launch` (gloo on this CPU)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

ACCELERATE = Path(sys.executable).with_name("accelerate")
MULTI_CPU = Path(__file__).resolve().parents[1] / "configs" / "accelerate" / "multi_cpu.yaml"


def free_port() -> int:
    """A TCP port nobody listens on now (each launch rendezvouses on its own, so that runs of
    other worktrees or test sessions on this machine never meet)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def lisa_command(processes: int, argv: list[str]) -> list[str]:
    """``lisa ARGV`` in one process, or under ``accelerate launch`` in ``processes``."""
    if processes == 1:
        return [sys.executable, "-m", "lisa.cli", *argv]
    return [str(ACCELERATE), "launch", "--config_file", str(MULTI_CPU), "--num_processes", str(processes),
            "--main_process_ip", "127.0.0.1", "--main_process_port", str(free_port()), "-m", "lisa.cli", *argv]


def start(processes: int, argv: list[str], logs: Path, command: list[str] | None = None) -> subprocess.Popen:
    """Start ``lisa ARGV`` (or ``command``) in a new process group (so that one SIGKILL reaches
    the launcher and its workers); stdout and stderr go to LOGS.out and LOGS.err."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(f"{logs}.out", "w") as out, open(f"{logs}.err", "w") as err:
        return subprocess.Popen(command or lisa_command(processes, argv), env=env, stdout=out, stderr=err, start_new_session=True)


def finish(process: subprocess.Popen, logs: Path, timeout: float = 300) -> tuple[str, str]:
    """Wait; assert success; returns (stdout, stderr)."""
    process.wait(timeout=timeout)
    out, err = Path(f"{logs}.out").read_text(), Path(f"{logs}.err").read_text()
    assert process.returncode == 0, err[-3000:]
    return out, err
