"""Checkpoints: atomic (written to ``NAME.tmp`` then renamed), verified, the last K kept, exact resume.

One format for every loop (the LISA trainer and the single-process SAM / baseline loops). A
checkpoint folder ``checkpoints/step-0000000N/`` holds the trainable weights (safetensors), the
optimizer state (``torch.save``, read back with ``weights_only=True``), the scheduler (when the
loop has one) and trainer state as JSON, and every process's torch / numpy / python RNG states.
Under DeepSpeed and FSDP the engine's own (sharded) state is saved with
``accelerator.save_state`` inside the same folder (``deepspeed/``, ``fsdp/``). ``manifest.json``
(size and sha256 of every other file) is written last: resume checks it and falls back to the
newest intact checkpoint, so a flipped byte or a truncated file is found and said, never
trained on.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from safetensors.torch import load_file

from lisa.errors import LisaError
from lisa.model.weights import write_safetensors

STATE_NAME = "state.json"
WEIGHTS_NAME = "trainable.safetensors"
OPTIMIZER_NAME = "optimizer.pt"
SCHEDULER_NAME = "scheduler.json"
MANIFEST_NAME = "manifest.json"
DEEPSPEED_DIR = "deepspeed"
FSDP_DIR = "fsdp"
DAMAGED_SUFFIX = ".damaged"
# The single-process loops' names before the two formats became one (still read on resume).
LEGACY_WEIGHTS_NAME, LEGACY_RNG_NAME = "weights.safetensors", "rng"
_STEP_FOLDER = re.compile(r"step-(\d+)")


class SingleProcess:
    """What saving and loading need of an ``accelerate.Accelerator``, for the single-process loops."""

    is_main_process = True
    process_index = 0
    num_processes = 1
    distributed_type = "NO"

    def wait_for_everyone(self) -> None:
        pass

    def unwrap_model(self, model):
        return model


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


def gather_rng(accelerator) -> list[tuple[int, dict[str, Any], dict[str, torch.Tensor]]]:
    """(rank, state, tensors) of every process, so that the main process alone writes them."""
    mine = (accelerator.process_index, rng_state(), rng_tensors())
    if accelerator.num_processes == 1:
        return [mine]
    from accelerate.utils import gather_object

    return sorted(gather_object([mine]), key=lambda entry: entry[0])


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
    """Complete checkpoints (``step-N`` with its state), oldest first; ``.tmp`` and ``.damaged`` are not."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if p.is_dir() and _STEP_FOLDER.fullmatch(p.name) and (p / STATE_NAME).is_file()]
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


# ---- manifest -----------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder: Path) -> None:
    """Size and sha256 of every file below ``folder``; written last, once everything else is."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)
    entries = {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": _sha256(p)} for p in files}
    (folder / MANIFEST_NAME).write_text(json.dumps({"files": entries}, indent=1) + "\n")


def verify_checkpoint(folder: Path) -> str | None:
    """None when every file matches the manifest; else what is wrong (missing, truncated, changed)."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        return f"{MANIFEST_NAME} is missing"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["files"]
        expected = {str(name): (int(e["bytes"]), str(e["sha256"])) for name, e in entries.items()}
    except (UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError):
        return f"{MANIFEST_NAME} is unreadable"
    for name, (size, sha256) in expected.items():
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        if file.stat().st_size != size:
            return f"{name} has {file.stat().st_size} bytes, the manifest says {size} (truncated?)"
        if _sha256(file) != sha256:
            return f"{name} differs from the manifest (sha256): its bytes changed after saving"
    return None


def set_aside(folder: Path) -> Path:
    """Rename a damaged checkpoint out of the way (kept for inspection, never deleted)."""
    target = folder.with_name(folder.name + DAMAGED_SUFFIX)
    number = 1
    while target.exists():
        number += 1
        target = folder.with_name(f"{folder.name}{DAMAGED_SUFFIX}-{number}")
    os.replace(folder, target)
    return target


def choose_resume(directory: Path, report: Callable[[str], None] | None = None) -> Path | None:
    """The newest intact checkpoint of ``directory`` (None: there is none yet). Newer damaged
    ones are renamed ``*.damaged`` and reported with the reason; if every checkpoint is damaged,
    a LisaError. Main process only (it renames)."""
    report = report or (lambda line: print(line, file=sys.stderr, flush=True))
    damaged: list[str] = []
    for folder in reversed(list_checkpoints(directory)):
        problem = None if _without_manifest(folder) else verify_checkpoint(folder)
        if problem is None:
            if _without_manifest(folder):
                report(f"resume: {folder.name} has no {MANIFEST_NAME} (written by an older lisa-seg), so it "
                       "cannot be verified; resuming from it")
            elif damaged:
                report(f"resume: falling back to {folder.name}, the newest intact checkpoint")
            return folder
        aside = set_aside(folder)
        damaged.append(folder.name)
        report(f"resume: checkpoint {folder.name} is damaged ({problem}); kept as {aside.name}, not used")
    if damaged:
        raise LisaError(f"{directory}: no intact checkpoint to resume from (damaged: {', '.join(damaged)}); "
                        "restore the files, or start again without --resume in a new run_dir")
    return None


def _without_manifest(folder: Path) -> bool:
    return not (folder / MANIFEST_NAME).exists()


# ---- save / load --------------------------------------------------------------------------
def save_checkpoint(final: Path, accelerator, model, optimizer, scheduler, state: TrainState) -> None:
    """Every process calls this; the main process alone writes (every process's RNG state is
    gathered to it; only a sharding engine's state is written by each process), then the
    manifest, and renames. ``accelerator``: an Accelerator or SingleProcess(); ``scheduler``:
    None for loops that set the learning rate themselves."""
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    rngs = gather_rng(accelerator)
    engine = engine_dir(accelerator)
    if engine is not None:
        accelerator.save_state(str(tmp / engine))  # the engine writes its own (sharded) model and optimizer
    weights = full_trainable_state(accelerator, model)  # every process: FSDP gathers its shards
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        for rank, rng, tensors in rngs:
            (tmp / f"rng-{rank}.json").write_text(json.dumps(rng))
            write_safetensors(tensors, str(tmp / f"rng-{rank}.safetensors"))
        write_safetensors({k: v.contiguous() for k, v in weights.items()}, str(tmp / WEIGHTS_NAME))
        if engine is None:
            torch.save(optimizer.state_dict(), tmp / OPTIMIZER_NAME)
        if scheduler is not None:
            (tmp / SCHEDULER_NAME).write_text(json.dumps(scheduler.state_dict()))
        (tmp / STATE_NAME).write_text(json.dumps(asdict(state), indent=1))
        write_manifest(tmp)
        publish(tmp, final)
    accelerator.wait_for_everyone()


def load_trainable(model, checkpoint: Path) -> None:
    """Copy the checkpoint's tensors into ``model``'s trainable parameters (all must match)."""
    from lisa.model.weights import read_safetensors
    from lisa.train.trainable import trainable_state

    weights = checkpoint / WEIGHTS_NAME
    if not weights.is_file() and (checkpoint / LEGACY_WEIGHTS_NAME).is_file():
        weights = checkpoint / LEGACY_WEIGHTS_NAME
    saved = read_safetensors(weights)
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
    """Restore weights, optimizer, scheduler (None: the loop has none) and this process's RNG;
    returns the trainer state."""
    saved = len(list(checkpoint.glob("rng-*.json")))  # one per process (0: an older single-process one)
    if saved and saved != accelerator.num_processes:
        raise LisaError(f"{checkpoint} was saved by {saved} processes, this run has {accelerator.num_processes}; "
                        f"resume with {saved}")
    engine = engine_dir(accelerator)
    if engine is not None:
        accelerator.load_state(str(checkpoint / engine))
    else:
        load_trainable(accelerator.unwrap_model(model), checkpoint)
        optimizer.load_state_dict(torch.load(checkpoint / OPTIMIZER_NAME, weights_only=True, map_location="cpu"))
    if scheduler is not None:
        scheduler.load_state_dict(json.loads((checkpoint / SCHEDULER_NAME).read_text()))
    rank = accelerator.process_index
    rng_name = f"rng-{rank}"
    if rank == 0 and not (checkpoint / f"{rng_name}.json").is_file() and (checkpoint / f"{LEGACY_RNG_NAME}.json").is_file():
        rng_name = LEGACY_RNG_NAME
    rng_file = checkpoint / f"{rng_name}.json"
    if not rng_file.is_file():
        raise LisaError(f"{checkpoint} has no RNG state for process {rank}: resume with the same number of processes")
    set_rng(json.loads(rng_file.read_text()), load_file(str(checkpoint / f"{rng_name}.safetensors")))
    return TrainState(**json.loads((checkpoint / STATE_NAME).read_text()))


def engine_dir(accelerator) -> str | None:
    """The folder a sharding engine saves its own state in (DeepSpeed, FSDP), else None."""
    kind = str(accelerator.distributed_type)
    if kind.endswith("DEEPSPEED"):
        return DEEPSPEED_DIR
    return FSDP_DIR if kind.endswith("FSDP") else None


def full_trainable_state(accelerator, model) -> dict[str, torch.Tensor]:
    """The trainable tensors, whole. Every process must call it: under FSDP each holds a shard
    of every parameter (a DTensor) and ``full_tensor`` gathers them together."""
    from lisa.train.trainable import trainable_state

    state = trainable_state(accelerator.unwrap_model(model))
    return {name: t.full_tensor() if hasattr(t, "full_tensor") else t for name, t in state.items()}
