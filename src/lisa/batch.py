"""What the data and model packages both speak: the [SEG] token's text and a collated batch.

A module of its own so that neither package imports the other for these (the loaders write
``[SEG]`` into answers and collate builds ``LisaBatch``; the model reads both).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from lisa.model.mask_backbones import ImageEmbedding

SEG_TOKEN = "[SEG]"


@dataclass
class LisaBatch:
    """A collated batch. C conversations over B images."""

    input_ids: torch.Tensor  # [C, L] image span expanded, right-padded
    attention_mask: torch.Tensor  # [C, L]
    labels: torch.Tensor  # [C, L] IGNORE_INDEX outside assistant answers
    image_index: torch.Tensor  # [C] image of each conversation
    vlm_pixels: torch.Tensor  # the VLM adapter's layout: [B, 3, h, w] (Llava) or [P, patch_dim]
    sam_pixels: torch.Tensor  # [B, 3, S, S] the mask backbone's view
    resized_sizes: list[tuple[int, int]]  # per image, mask-backbone view before padding
    original_sizes: list[tuple[int, int]]  # per image
    masks: list[torch.Tensor]  # per conversation [n_seg, H, W] (1 target, 0 background, 255 ignore)
    sam_embeddings: ImageEmbedding | torch.Tensor | None = None  # precomputed (the encoder is frozen)
    meta: list[dict] = field(default_factory=list)
    vlm_grids: torch.Tensor | None = None  # [B, 3] patch grid per image (dynamic-resolution VLMs)

    def to(self, device: torch.device | str) -> "LisaBatch":
        move = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
        return LisaBatch(
            move(self.input_ids), move(self.attention_mask), move(self.labels), move(self.image_index),
            move(self.vlm_pixels), move(self.sam_pixels), self.resized_sizes, self.original_sizes,
            [move(m) for m in self.masks],
            None if self.sam_embeddings is None else self.sam_embeddings.to(device), self.meta,
            move(self.vlm_grids),
        )
