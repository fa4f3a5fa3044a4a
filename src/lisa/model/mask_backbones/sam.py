"""SAM (transformers' ``SamModel``) behind the mask-backbone seam.

The numerics are ``lisa.model.sam``'s, unchanged: the released-LISA path and its parity tests
run through these calls bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import SamConfig, SamModel

from lisa.data.transforms import SamView, sam_view
from lisa.model import sam as sam_ops
from lisa.model.mask_backbones.base import MaskBackbone, Part
from lisa.model.mask_backbones.embedding import ImageEmbedding


class SamBackbone(MaskBackbone):
    model_type = "sam"
    config_class = SamConfig
    model_class = SamModel

    @staticmethod
    def input_size(config: dict[str, Any]) -> int:
        return int(config["vision_config"]["image_size"])

    @staticmethod
    def part(name: str) -> Part | None:
        if name.startswith("vision_encoder."):
            return "image_encoder"
        if name.startswith("mask_decoder."):
            return "mask_decoder"
        return None  # prompt encoder, shared positional matrix: frozen

    def view(self, image: np.ndarray) -> SamView:
        """Longest side to S, normalise on the 0-255 scale, zero-pad bottom/right."""
        return sam_view(image, self.image_size)

    def embed(self, pixels: torch.Tensor) -> ImageEmbedding:
        return ImageEmbedding(sam_ops.encode_images(self.model, pixels))  # [B, C, h, w]

    def decode(
        self, embedding: ImageEmbedding, prompts: torch.Tensor, image_index: torch.Tensor,
        dense: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return sam_ops.decode_masks(self.model, embedding.embeddings, prompts, image_index, dense)

    def upscale(
        self, low_res: torch.Tensor, resized_size: tuple[int, int], original_size: tuple[int, int]
    ) -> torch.Tensor:
        """To S x S, crop the padding, then to the original size."""
        return sam_ops.upscale_masks(low_res, self.image_size, resized_size, original_size)

    def init_from_scratch(self) -> None:
        sam_ops.init_sam_from_scratch(self.model)
