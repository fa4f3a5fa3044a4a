"""A few optimizer steps on one fixed batch, as the trainer takes them (clip, step, schedule)."""

from __future__ import annotations

import torch

from lisa.train.config import config_from_dict
from lisa.train.trainer import make_optimizer


def fixed_batch_losses(model: torch.nn.Module, batch, steps: int, lr: float = 1e-2) -> list[float]:
    """The loss before each of ``steps`` steps on ``batch`` (AdamW at ``lr``, no warm-up)."""
    config = config_from_dict({"run_dir": "unused", "model": {"build": {}}, "data": [{"type": "jsonl", "dir": "x"}],
                               "optim": {"lr": lr, "warmup_steps": 0, "max_steps": 1000}})
    optimizer, scheduler = make_optimizer(model, config)
    losses = []
    for _ in range(steps):
        out = model(batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(float(out.loss.detach()))
    return losses
