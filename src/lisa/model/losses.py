"""LISA's losses: token CE for text, per-mask BCE and DICE for masks (as the official ``model/LISA.py``)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from lisa.errors import LisaError
from lisa.model.prompting import IGNORE_INDEX


def text_ce_loss(hidden: torch.Tensor, labels: torch.Tensor, head: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Next-token CE averaged over every supervised token of the batch. hidden [C, L, D] (or
    logits, with an identity head), labels [C, L]. The head (lm_head) runs only where a
    supervised token is predicted: answers are a few percent of a sequence, and full [C, L, V]
    logits of a 32k vocabulary would be the largest tensor of a training step."""
    targets = labels[:, 1:]
    supervised = targets != IGNORE_INDEX
    if not bool(supervised.any()):
        return hidden.sum() * 0.0
    logits = head(hidden[:, :-1][supervised]).float()
    return F.cross_entropy(logits, targets[supervised])


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


def target_cell_shares(masks: list[torch.Tensor], grid: int,
                       frames: list[tuple[tuple[int, int], int]] | None = None) -> torch.Tensor:
    """Every target of a batch (``masks``: per conversation [n_i, H, W], 1 = target; other values,
    ignore labels included, are not) as its share of each cell of a grid x grid partition of
    the whole image, row by row, normalised to sum to 1 ([N, grid * grid] in [SEG] order; a row
    of zeros: no target).

    ``frames`` (per conversation: the rows and columns the image fills in the mask backbone's
    square view, from the top left, and the view's side S): the grid partitions that S x S view
    instead (the layout of the mask backbone's embedding; SAM pads the resized image)."""
    flat = [mask for conversation in masks for mask in conversation]
    if not flat:
        return torch.zeros(0, grid * grid)
    if frames is None:
        shares = torch.stack([F.adaptive_avg_pool2d((m == 1).float()[None, None], grid).flatten() for m in flat])
    else:
        frame_of_mask = [frame for conversation, frame in zip(masks, frames) for _ in conversation]
        shares = torch.stack([_padded_shares(m, size, side, grid) for m, (size, side) in zip(flat, frame_of_mask)])
    return shares / shares.sum(-1, keepdim=True).clamp(min=1e-12)


def _padded_shares(mask: torch.Tensor, resized_size: tuple[int, int], side: int, grid: int) -> torch.Tensor:
    """A mask's share of each cell of the padded S x S view, [grid * grid] (unnormalised)."""
    resized = F.interpolate((mask == 1).float()[None, None], size=tuple(resized_size), mode="area")
    padded = F.pad(resized, (0, side - resized_size[1], 0, side - resized_size[0]))
    return F.adaptive_avg_pool2d(padded, grid).flatten()


def attention_grid(attention: torch.Tensor) -> int:
    """The side of the square image-token grid a seg head's attention [N, T] is over (its
    supervision and its dense prompt both lay it on the image as a grid)."""
    grid = int(round(attention.shape[-1] ** 0.5))
    if grid * grid != attention.shape[-1]:
        raise LisaError(f"supervising the seg head's image attention or using it as a dense prompt needs a "
                        f"square image-token grid, got {attention.shape[-1]} tokens")
    return grid


def attention_cross_entropy_sum(attention: torch.Tensor, masks: list[torch.Tensor],
                                frames: list[tuple[tuple[int, int], int]] | None = None) -> torch.Tensor:
    """Sum over the [SEG]s of the cross-entropy of the seg head's attention [N, T] against its
    target's ``target_cell_shares`` (``masks`` and ``frames`` as there; a [SEG] without a target
    adds 0)."""
    grid = attention_grid(attention)
    shares = target_cell_shares(masks, grid, frames).to(device=attention.device, dtype=attention.dtype)
    return -(shares * attention.clamp(min=1e-12).log()).sum()
