"""N processes x micro-batch b train exactly as 1 process x micro-batch N*b (to float rounding).

Two rules make that true by design:

* Data. The stream is one sequence of positions (``lisa.data.mixture``). A global micro-batch
  starting at position p holds positions p .. p + N*b - 1; process r takes the slice
  p + r*b .. p + r*b + b - 1 (``lisa.train.data.micro_batch``) and every process then moves p
  on by N*b. One process with micro-batch N*b draws the same positions in the same order.
* Loss. LISA's losses are means over the micro-batch: CE over its supervised tokens, mask BCE
  and DICE over its masks. DDP averages the processes' gradients, which weighs every process
  alike; with uneven token or mask counts that is not the mean over the global micro-batch. So
  each process first learns the global counts (one all-reduce of two numbers), rewrites its
  means as its share of the global means, and multiplies by N to undo DDP's average.

Gradient accumulation composes: each micro-step is one global micro-batch, as in one process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from lisa.batch import LisaBatch
from lisa.errors import LisaError
from lisa.model.prompting import IGNORE_INDEX

if TYPE_CHECKING:
    from lisa.model.lisa import LisaOutput


def local_counts(batch: LisaBatch) -> torch.Tensor:
    """[supervised tokens, target masks] of this process's micro-batch (float64), counted as
    the model's losses count them (``text_ce_loss`` predicts labels[:, 1:])."""
    tokens = int((batch.labels[:, 1:] != IGNORE_INDEX).sum())
    masks = sum(int(m.shape[0]) for m in batch.masks)
    return torch.tensor([tokens, masks], dtype=torch.float64)


def shares(local: torch.Tensor, total: torch.Tensor) -> torch.Tensor:
    """This process's share of each global mean (0 where the global count is 0: the loss is 0)."""
    return torch.where(total > 0, local / total.clamp(min=1), torch.zeros_like(local))


def loss_and_parts(out: LisaOutput, share: torch.Tensor | None, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(the loss to back-propagate, the logged [loss, ce, bce, dice]); ``share`` None: one
    process, the model's own means."""
    if share is None:
        return out.loss, torch.stack([out.loss.detach(), out.ce_loss, out.bce_loss, out.dice_loss]).float().cpu()
    return rescale(out, share, world)


def rescale(out: LisaOutput, share: torch.Tensor, world: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(the loss to back-propagate, this process's part of the logged [loss, ce, bce, dice]).

    Summed over processes, the parts are the global micro-batch's losses; the back-propagated
    loss is N times this process's part, so DDP's average of gradients is the global gradient."""
    if out.text_loss is None or out.mask_loss is None:
        raise LisaError("this forward does not give its loss terms separately; it runs in one process only")
    text_share, mask_share = float(share[0]), float(share[1])
    part_loss = out.text_loss * text_share + out.mask_loss * mask_share
    parts = torch.stack([part_loss.detach(), out.ce_loss * text_share, out.bce_loss * mask_share,
                         out.dice_loss * mask_share]).float().cpu()
    return part_loss * world, parts


def sum_over_processes(values: torch.Tensor, accelerator) -> torch.Tensor:
    """Element-wise sum of a small CPU tensor over every process (one all-reduce)."""
    return accelerator.reduce(values.to(accelerator.device), reduction="sum").cpu()
