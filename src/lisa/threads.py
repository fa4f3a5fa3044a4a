"""How many CPU threads torch uses: ``--threads`` on the commands, ``threads=`` in Python.

The default ("auto") is ``$OMP_NUM_THREADS`` when it is set, otherwise the cores that are free
right now, at most 4: ``min(4, usable cores - 1-minute load average)``, at least 1. Two reasons:
a tiny model gains little from more than 4 threads (its matrices are small), and oversubscribed
cores are far worse than idle ones: torch's threads wait on each other, so a thread that loses
its core stalls every step. On a 2-core machine with a load average of 8.5,
``python benchmarks/bench_inference.py --runs 5 --threads N`` gave a median warm query of 230 ms
with one thread and 2272 ms with two. A dedicated machine therefore gets up to 4 threads and a
busy one gets 1. Pass an explicit count for reproducible timings; the thread count changes the
order of float sums, not the results beyond the last bits.
"""

from __future__ import annotations

import argparse
import os

from lisa.errors import LisaError

MAX_DEFAULT_THREADS = 4

THREADS_HELP = (
    "CPU threads for torch (default auto: $OMP_NUM_THREADS if set, else the free cores, at most "
    f"{MAX_DEFAULT_THREADS}; 1 on a busy machine)"
)


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def default_threads() -> int:
    """$OMP_NUM_THREADS if set, else min(4, free cores) and at least 1 (see the module doc)."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        busy = int(os.getloadavg()[0])
    except (AttributeError, OSError):  # no load average on this platform
        busy = 0
    return max(1, min(MAX_DEFAULT_THREADS, usable_cores() - busy))


def parse_threads(value: str | int | None) -> int | None:
    """``None`` / "auto" -> None (use the default); a positive integer -> itself."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise LisaError(f"threads must be a positive integer or 'auto', got {value!r}") from None
    if count < 1:
        raise LisaError(f"threads must be at least 1, got {count}")
    return count


def set_threads(threads: str | int | None = None) -> int:
    """Set torch's intra-op and inter-op thread counts; returns the intra-op count used.

    Inter-op threads can only be set before torch runs its first parallel work; later calls
    keep the count already in place (intra-op is what matters for these models)."""
    import torch

    count = parse_threads(threads) or default_threads()
    torch.set_num_threads(count)
    if torch.get_num_interop_threads() != count:
        try:
            torch.set_num_interop_threads(count)
        except RuntimeError:  # already started: torch refuses to change it
            pass
    return count


def _threads_type(value: str) -> int | str:
    try:
        return parse_threads(value) or "auto"
    except LisaError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_threads_argument(parser: argparse.ArgumentParser, help: str = THREADS_HELP) -> None:
    """``--threads N|auto`` (parsed to an int or "auto", what ``set_threads`` takes)."""
    parser.add_argument("--threads", type=_threads_type, default="auto", metavar="N", help=help)
