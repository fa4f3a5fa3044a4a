"""A single-process training loop for the small from-scratch pieces (stage-1 SAM, the no-LLM
baseline): AdamW, the trainer's warm-up / linear-decay schedule (``lisa.train.schedule``),
clipping, a JSONL log, and atomic checkpoints of the trainable parameters that resume exactly
(batches must be a pure function of the step).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file
from torch import nn

from lisa.errors import LisaError
from lisa.model.weights import write_safetensors
from lisa.train.checkpoint import (
    OPTIMIZER_NAME, STATE_NAME, list_checkpoints, prune, publish, rng_state, rng_tensors, set_rng, step_name,
)
from lisa.train.progress import log_line
from lisa.train.schedule import lr_factor

WEIGHTS_NAME = "weights.safetensors"
StepLoss = Callable[[int], tuple[torch.Tensor, dict[str, float]]]  # step -> (loss, logged parts: bce, dice, ...)


@dataclass
class LoopSettings:
    lr: float
    warmup_steps: int
    max_steps: int
    clip: float
    save_every: int
    keep_last: int
    log_every: int


def lr_at(step: int, settings: LoopSettings) -> float:
    """The learning rate of optimizer step ``step``: the same schedule as the main trainer."""
    return settings.lr * lr_factor(step, settings.warmup_steps, settings.max_steps)


def trainable_parameters(module: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in module.named_parameters() if p.requires_grad}


def save_checkpoint(checkpoints: Path, step: int, module: nn.Module, optimizer: torch.optim.Optimizer, keep_last: int) -> None:
    final = checkpoints / step_name(step)
    tmp = final.with_name(final.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    write_safetensors({k: v.detach().contiguous() for k, v in trainable_parameters(module).items()}, str(tmp / WEIGHTS_NAME))
    torch.save(optimizer.state_dict(), tmp / OPTIMIZER_NAME)
    (tmp / "rng.json").write_text(json.dumps(rng_state()))
    write_safetensors(rng_tensors(), str(tmp / "rng.safetensors"))
    (tmp / STATE_NAME).write_text(json.dumps({"step": step}))  # written last: marks completeness
    publish(tmp, final)
    prune(checkpoints, keep_last)


def load_checkpoint(checkpoint: Path, module: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    saved, expected = load_file(str(checkpoint / WEIGHTS_NAME)), trainable_parameters(module)
    if set(saved) != set(expected):
        raise LisaError(f"{checkpoint} does not match this run's trainable parameters; was the config changed?")
    with torch.no_grad():
        for name, parameter in expected.items():
            parameter.copy_(saved[name])
    optimizer.load_state_dict(torch.load(checkpoint / OPTIMIZER_NAME, weights_only=True))
    set_rng(json.loads((checkpoint / "rng.json").read_text()), load_file(str(checkpoint / "rng.safetensors")))
    return int(json.loads((checkpoint / STATE_NAME).read_text())["step"])


def check_new_or_resumed(run_dir: Path, resume: bool) -> None:
    """An existing run is continued only on request, never overwritten."""
    if list_checkpoints(run_dir / "checkpoints") and not resume:
        raise LisaError(f"{run_dir} already has checkpoints: add --resume to continue it, or choose another run_dir")


def run_loop(name: str, run_dir: Path, module: nn.Module, step_loss: StepLoss, settings: LoopSettings, resume: bool) -> None:
    """Train ``module``'s trainable parameters until ``max_steps`` (from the latest checkpoint
    when ``resume``)."""
    check_new_or_resumed(run_dir, resume)
    checkpoints = run_dir / "checkpoints"
    found = list_checkpoints(checkpoints)
    params = list(trainable_parameters(module).values())
    optimizer = torch.optim.AdamW(params, lr=settings.lr, betas=(0.9, 0.95), weight_decay=0.0)
    step = load_checkpoint(found[-1], module, optimizer) if found else 0
    module.train()
    start, first = time.perf_counter(), step
    with (run_dir / "log.jsonl").open("a") as log:
        while step < settings.max_steps:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, settings)
            loss, parts = step_loss(step)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, settings.clip)
            optimizer.step()
            step += 1
            if step % settings.log_every == 0 or step == settings.max_steps:
                rate = (step - first) / max(time.perf_counter() - start, 1e-9)
                entry = {"step": step, "loss": float(loss.detach()), **parts, "lr": lr_at(step - 1, settings)}
                log.write(log_line(entry))
                log.flush()
                shown = " ".join(f"{k}={v:.4f}" for k, v in parts.items())
                print(f"{name} step {step}/{settings.max_steps} loss={entry['loss']:.4f} {shown} ({rate:.2f} steps/s)", flush=True)
            if step % settings.save_every == 0 or step == settings.max_steps:
                save_checkpoint(checkpoints, step, module, optimizer, settings.keep_last)
    module.eval()
