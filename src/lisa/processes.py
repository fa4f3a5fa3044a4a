"""Which process this is under a launcher (torchrun, ``accelerate launch``), before any setup.

Accelerate's MULTI_CPU launcher needs mpirun; its torchrun launcher (``--multi_gpu``) works on a
machine without CUDA once Accelerate is told ``cpu=True``: the processes then meet over gloo.
"""

from __future__ import annotations

import os


def world_size() -> int:
    """Processes in this launch (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_first_process() -> bool:
    """True in the launch's rank-0 process (or without a launcher): it alone prints and writes."""
    return int(os.environ.get("RANK", "0")) == 0


def launched_without_gpus() -> bool:
    """A many-process launch on a machine without CUDA: Accelerate must run it on CPU (gloo)."""
    import torch

    return world_size() > 1 and not torch.cuda.is_available()


def sharding_engine() -> str | None:
    """"deepspeed" or "fsdp" when ``accelerate launch`` asked for one (its config file), else None."""
    for engine, flag in (("deepspeed", "ACCELERATE_USE_DEEPSPEED"), ("fsdp", "ACCELERATE_USE_FSDP")):
        if os.environ.get(flag, "false").lower() == "true":
            return engine
    return None
