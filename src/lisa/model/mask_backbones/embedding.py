"""What a mask backbone's image encoder hands its mask decoder, as one object.

SAM needs one embedding per image; SAM 2 also needs its high-resolution FPN features. Callers
that cache or batch image encodings (the pipeline, the training cache, ``LisaBatch``) hold an
``ImageEmbedding`` and never look inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class ImageEmbedding:
    """B images' encodings (or one image's, after indexing with an int)."""

    embeddings: torch.Tensor  # [B, C, h, w] the decoder's image embedding
    high_res: tuple[torch.Tensor, ...] = ()  # SAM 2: [B, C/8, 4h, 4w] and [B, C/4, 2h, 2w]; SAM: ()

    def __getitem__(self, index: Any) -> "ImageEmbedding":
        """The same index applied to every tensor: ``[i]`` one image, ``[None]`` a batch of one,
        ``[index_tensor]`` a selection."""
        return ImageEmbedding(self.embeddings[index], tuple(f[index] for f in self.high_res))

    def to(self, *args: Any, **kwargs: Any) -> "ImageEmbedding":
        return ImageEmbedding(self.embeddings.to(*args, **kwargs), tuple(f.to(*args, **kwargs) for f in self.high_res))

    @staticmethod
    def stack(items: list["ImageEmbedding"]) -> "ImageEmbedding":
        """Single-image embeddings -> one batch (torch.stack on every tensor)."""
        levels = len(items[0].high_res)
        return ImageEmbedding(
            torch.stack([item.embeddings for item in items]),
            tuple(torch.stack([item.high_res[level] for item in items]) for level in range(levels)),
        )

    @staticmethod
    def of(value: "ImageEmbedding | torch.Tensor") -> "ImageEmbedding":
        """A bare [B, C, h, w] tensor (a SAM embedding, as callers before the seam passed it) is
        wrapped; an ImageEmbedding is returned as is."""
        return value if isinstance(value, ImageEmbedding) else ImageEmbedding(value)
