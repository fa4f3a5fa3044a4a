"""LISA's losses: token CE for text, per-mask BCE and DICE for masks (reference 3.1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lisa.model.prompting import IGNORE_INDEX


def text_ce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Next-token CE averaged over every supervised token of the batch. logits [C, L, V], labels [C, L]."""
    shifted_logits = logits[:, :-1].reshape(-1, logits.shape[-1]).float()
    shifted_labels = labels[:, 1:].reshape(-1)
    if (shifted_labels != IGNORE_INDEX).sum() == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(shifted_logits, shifted_labels, ignore_index=IGNORE_INDEX)


def mask_bce_sum(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Sum over masks of the pixel-mean BCE. logits, targets [N, H, W] float."""
    per_pixel = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return per_pixel.flatten(1).mean(1).sum()


def mask_dice_sum(logits: torch.Tensor, targets: torch.Tensor, scale: float = 1000.0, eps: float = 1e-6) -> torch.Tensor:
    """Sum over masks of 1 - Dice, LISA's variant: every sum divided by ``scale`` (so the
    smoothing eps acts like 1e-3 pixels) and eps added to numerator and denominator."""
    probs = logits.sigmoid().flatten(1)
    targets = targets.flatten(1)
    numerator = 2 * (probs / scale * targets).sum(-1)
    denominator = (probs / scale).sum(-1) + (targets / scale).sum(-1)
    return (1 - (numerator + eps) / (denominator + eps)).sum()
