"""Checkpoints: atomic (written to ``NAME.tmp`` then renamed), the last K kept, exact resume.

A checkpoint folder ``checkpoints/step-00000N/`` holds the trainable weights (safetensors),
the optimizer state (``torch.save``, read back with ``weights_only=True``), the scheduler and
trainer state as JSON, and every process's torch / numpy / python RNG states. ``state.json`` is
written last, so a folder without it is never taken for a checkpoint. Under DeepSpeed the
engine's own state is saved with ``accelerator.save_state`` inside the same folder.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file

from lisa.errors import LisaError
from lisa.model.weights import write_safetensors

STATE_NAME = "state.json"
WEIGHTS_NAME = "trainable.safetensors"
OPTIMIZER_NAME = "optimizer.pt"
SCHEDULER_NAME = "scheduler.json"
DEEPSPEED_DIR = "deepspeed"


@dataclass
class TrainState:
    step: int = 0  # optimizer steps done
    position: int = 0  # next stream position of the training data
    samples: int = 0  # images seen (all processes)
    best_metric: float | None = None
    best_step: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # validation results


# ---- RNG ----------------------------------------------------------------------------------
def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states of this process (torch tensors kept separately)."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(internal), gauss],
        "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }


def rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{index}"] = state
    return tensors


def set_rng(state: dict[str, Any], tensors: dict[str, torch.Tensor]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)


# ---- folders ------------------------------------------------------------------------------
def step_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.glob("step-*") if p.is_dir() and not p.name.endswith(".tmp") and (p / STATE_NAME).is_file()]
    return sorted(found, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(directory: Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1] if found else None


def remove_partial(directory: Path) -> None:
    """Remove ``*.tmp`` folders left by a run killed while saving."""
    if directory.is_dir():
        for path in directory.glob("*.tmp"):
            shutil.rmtree(path, ignore_errors=True)


def publish(tmp: Path, final: Path) -> None:
    """Atomically make ``tmp`` visible as ``final`` (an older ``final`` is replaced)."""
    if final.exists():
        old = final.with_name(final.name + ".old.tmp")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)


def prune(directory: Path, keep_last: int) -> None:
    for path in list_checkpoints(directory)[:-keep_last]:
        shutil.rmtree(path, ignore_errors=True)


# ---- save / load --------------------------------------------------------------------------
def save_checkpoint(final: Path, accelerator, model, optimizer, scheduler, state: TrainState) -> None:
    """Every process calls this; the main process writes the shared files and renames."""
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    rank = accelerator.process_index
    (tmp / f"rng-{rank}.json").write_text(json.dumps(rng_state()))
    write_safetensors(rng_tensors(), str(tmp / f"rng-{rank}.safetensors"))
    if _is_deepspeed(accelerator):
        accelerator.save_state(str(tmp / DEEPSPEED_DIR))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        from lisa.train.trainable import trainable_state

        write_safetensors({k: v.contiguous() for k, v in trainable_state(accelerator.unwrap_model(model)).items()},
                          str(tmp / WEIGHTS_NAME))
        if not _is_deepspeed(accelerator):
            torch.save(optimizer.state_dict(), tmp / OPTIMIZER_NAME)
        (tmp / SCHEDULER_NAME).write_text(json.dumps(scheduler.state_dict()))
        (tmp / STATE_NAME).write_text(json.dumps(asdict(state), indent=1))
        publish(tmp, final)
    accelerator.wait_for_everyone()


def load_trainable(model, checkpoint: Path) -> None:
    """Copy the checkpoint's tensors into ``model``'s trainable parameters (all must match)."""
    from lisa.train.trainable import trainable_state

    saved = load_file(str(checkpoint / WEIGHTS_NAME))
    expected = trainable_state(model)
    if set(saved) != set(expected):
        missing = sorted(set(expected) - set(saved))[:5]
        extra = sorted(set(saved) - set(expected))[:5]
        raise LisaError(f"{checkpoint} does not match this run's trainable parameters "
                        f"(missing {missing}, unexpected {extra}); was the config changed?")
    with torch.no_grad():
        for name, tensor in expected.items():
            tensor.copy_(saved[name])


def load_checkpoint(checkpoint: Path, accelerator, model, optimizer, scheduler) -> TrainState:
    """Restore weights, optimizer, scheduler and this process's RNG; returns the trainer state."""
    if _is_deepspeed(accelerator):
        accelerator.load_state(str(checkpoint / DEEPSPEED_DIR))
    else:
        load_trainable(accelerator.unwrap_model(model), checkpoint)
        optimizer.load_state_dict(torch.load(checkpoint / OPTIMIZER_NAME, weights_only=True, map_location="cpu"))
    scheduler.load_state_dict(json.loads((checkpoint / SCHEDULER_NAME).read_text()))
    rank = accelerator.process_index
    rng_file = checkpoint / f"rng-{rank}.json"
    if not rng_file.is_file():
        raise LisaError(f"{checkpoint} has no RNG state for process {rank}: resume with the same number of processes")
    set_rng(json.loads(rng_file.read_text()), load_file(str(checkpoint / f"rng-{rank}.safetensors")))
    return TrainState(**json.loads((checkpoint / STATE_NAME).read_text()))


def _is_deepspeed(accelerator) -> bool:
    return str(accelerator.distributed_type).endswith("DEEPSPEED")
