"""Dense auxiliary targets for stage 1: make the SAM image embedding keep what words name.

A SAM trained from scratch on box / point prompts only needs edges: its embedding forgets colour
and kind, and then no text prompt, from an LLM or a text encoder, can select "the blue square"
(README: a linear probe reads an object's colour from the stage-1 embedding 39 % of the time).
The paper's SAM brings such features from SA-1B scale; a tiny one is given them here by two
1x1 heads on the embedding, trained in stage 1 only and dropped with it:

- semantic: one logit map per class name of the semantic records (BCE only where the class is
  annotated for that image; its mask is then complete: positive inside, negative outside);
- colour: the input image itself at the mask decoder's resolution (4x the embedding grid), MSE.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

UPSCALE = 4  # SAM's mask decoder upsamples its embedding 4x; the heads predict at that grid


class DenseHeads(nn.Module):
    def __init__(self, channels: int, num_classes: int) -> None:
        super().__init__()
        self.semantic = nn.Conv2d(channels, num_classes, 1)
        self.colour = nn.Conv2d(channels, 3 * UPSCALE**2, 1)

    def forward(self, embeddings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, C, h, w] -> semantic logits [B, K, 4h, 4w] and colour [B, 3, 4h, 4w]."""
        height, width = embeddings.shape[-2:]
        semantic = F.interpolate(self.semantic(embeddings), (UPSCALE * height, UPSCALE * width),
                                 mode="bilinear", align_corners=False)
        return semantic, F.pixel_shuffle(self.colour(embeddings), UPSCALE)


def to_head_grid(mask: torch.Tensor, resized: tuple[int, int], input_size: int, grid: tuple[int, int]) -> torch.Tensor:
    """An original-size mask [H, W] -> its share of each head cell [4h, 4w], laid out like SAM's
    input (resized, padded bottom-right)."""
    view = F.interpolate(mask[None, None].float(), resized, mode="area")[0, 0]
    padded = F.pad(view, (0, input_size - resized[1], 0, input_size - resized[0]))
    return F.adaptive_avg_pool2d(padded[None, None], grid)[0, 0]


def dense_losses(heads: DenseHeads, embeddings: torch.Tensor, pixel_values: torch.Tensor,
                 labels: list[list[tuple[int, torch.Tensor]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(semantic BCE over the annotated (image, class) maps, colour MSE) for one batch.

    labels[b]: (class index, mask on the head grid [4h, 4w]) for every class annotated in image b.
    """
    semantic, colour = heads(embeddings)
    colour_target = F.adaptive_avg_pool2d(pixel_values.to(colour.dtype), colour.shape[-2:])
    colour_loss = F.mse_loss(colour, colour_target)
    pairs = [(b, k, mask) for b, annotated in enumerate(labels) for k, mask in annotated]
    if not pairs:
        return semantic.sum() * 0.0, colour_loss
    logits = torch.stack([semantic[b, k] for b, k, _ in pairs])
    targets = torch.stack([mask for _, _, mask in pairs]).to(logits.dtype)
    return F.binary_cross_entropy_with_logits(logits, targets), colour_loss
