"""A single-process training loop for the small from-scratch pieces (stage-1 SAM, the no-LLM
baseline): AdamW, the trainer's warm-up / linear-decay schedule (``lisa.train.schedule``),
clipping, a JSONL log, and checkpoints in the trainer's format (lisa.train.checkpoint: verified
on resume, which falls back to the newest intact one) that resume exactly (batches must be a
pure function of the step). On resume the log lines of steps after the checkpoint are dropped
(they are trained again), as in the trainer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from lisa.errors import LisaError
from lisa.train import checkpoint as ckpt
from lisa.train.progress import LOG_NAME, drop_log_after, log_line
from lisa.train.schedule import lr_factor

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


def check_new_or_resumed(run_dir: Path, resume: bool) -> None:
    """An existing run is continued only on request, never overwritten."""
    if ckpt.list_checkpoints(run_dir / "checkpoints") and not resume:
        raise LisaError(f"{run_dir} already has checkpoints: add --resume to continue it, or choose another run_dir")


def run_loop(name: str, run_dir: Path, module: nn.Module, step_loss: StepLoss, settings: LoopSettings, resume: bool,
             after_save: Callable[[int], dict[str, float]] | None = None) -> None:
    """Train ``module``'s trainable parameters until ``max_steps`` (from the latest checkpoint
    when ``resume``). ``after_save(step)``, when given, runs after each checkpoint (e.g. a
    validation); what it returns is logged with the step. It must leave the RNG states alone."""
    check_new_or_resumed(run_dir, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = run_dir / "checkpoints"
    ckpt.remove_partial(checkpoints)
    process = ckpt.SingleProcess()
    params = list(trainable_parameters(module).values())
    optimizer = torch.optim.AdamW(params, lr=settings.lr, betas=(0.9, 0.95), weight_decay=0.0)
    found = ckpt.choose_resume(checkpoints) if resume else None
    step = ckpt.load_checkpoint(found, process, module, optimizer, None).step if found else 0
    drop_log_after(run_dir / LOG_NAME, step)
    module.train()
    start, first = time.perf_counter(), step
    with (run_dir / LOG_NAME).open("a") as log:
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
                ckpt.save_checkpoint(checkpoints / ckpt.step_name(step), process, module, optimizer, None,
                                     ckpt.TrainState(step=step))
                ckpt.prune(checkpoints, settings.keep_last)
                if after_save is not None:
                    scores = after_save(step)
                    module.train()
                    log.write(log_line({"step": step, **scores}))
                    log.flush()
                    print(f"{name} step {step} " + " ".join(f"{k}={v:.4f}" for k, v in scores.items()), flush=True)
    module.eval()
