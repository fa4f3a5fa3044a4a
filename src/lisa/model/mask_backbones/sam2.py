"""SAM 2 (transformers' ``Sam2Model``, image mode) behind the mask-backbone seam.

- View: the whole image resized to S x S (no padding), ImageNet mean/std on the 0-1 scale, as
  ``Sam2ImageProcessor``.
- Embedding: exactly ``Sam2Model.get_image_embeddings``: the Hiera encoder + FPN neck give three
  levels (strides 4, 8, 16); the stride-16 map plus the learned ``no_memory_embedding`` is the
  image embedding; the two finer maps go through the decoder's ``conv_s0`` / ``conv_s1`` once,
  here, so a cached embedding is small. Those two convolutions (and ``no_memory_embedding``)
  therefore count as the image encoder: frozen in LISA's recipe, trained with the encoder.
- Decode: the projected [SEG] state is the one sparse prompt token, the dense prompt is
  ``no_mask_embed``, mask token 0 is kept (``multimask_output=False``, and SAM 2's
  stability-based fallback to the multimask tokens is switched off: LISA trains token 0 only).
  SAM 2's object-score head is not used.
- Upscale: low-resolution logits straight to the original size (bilinear), as SAM 2 does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from transformers import Sam2Config, Sam2Model

from lisa.data.transforms import SamView, square_view
from lisa.model.mask_backbones.base import MaskBackbone, Part
from lisa.model.mask_backbones.embedding import ImageEmbedding

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_ENCODER_PREFIXES = ("vision_encoder.", "mask_decoder.conv_s0.", "mask_decoder.conv_s1.", "no_memory_embedding")


class Sam2Backbone(MaskBackbone):
    model_type = "sam2"
    config_class = Sam2Config
    model_class = Sam2Model
    pixel_mean = IMAGENET_MEAN
    pixel_std = IMAGENET_STD

    def __init__(self, model: Sam2Model) -> None:
        super().__init__(model)
        model.mask_decoder.dynamic_multimask_via_stability = False  # always mask token 0 (see above)

    @staticmethod
    def input_size(config: dict[str, Any]) -> int:
        return int(config["prompt_encoder_config"]["image_size"])

    @staticmethod
    def part(name: str) -> Part | None:
        if name.startswith(_ENCODER_PREFIXES):
            return "image_encoder"
        if name.startswith("mask_decoder."):
            return "mask_decoder"
        return None  # prompt encoder, positional matrices: frozen

    def view(self, image: np.ndarray) -> SamView:
        return square_view(image, self.image_size, self.pixel_mean, self.pixel_std)

    def embed(self, pixels: torch.Tensor) -> ImageEmbedding:
        """The decoder's len(backbone_feature_sizes) finest levels (an encoder may return more:
        SAM 3's), ``no_memory_embedding`` on the coarsest of them."""
        sam = self.model
        with torch.set_grad_enabled(self.encoder_trains()):
            levels = list(sam.vision_encoder(pixels.to(sam.dtype)).fpn_hidden_states)  # fine to coarse, [B, C, *]
            levels = levels[: len(sam.backbone_feature_sizes)]
            levels[-1] = levels[-1] + sam.no_memory_embedding.reshape(1, -1, 1, 1)
            high_0 = sam.mask_decoder.conv_s0(levels[0])  # [B, C/8, 4h, 4w]
            high_1 = sam.mask_decoder.conv_s1(levels[1])  # [B, C/4, 2h, 2w]
        return ImageEmbedding(levels[-1], (high_0, high_1))  # image embedding [B, C, h, w]

    def decode(
        self, embedding: ImageEmbedding, prompts: torch.Tensor, image_index: torch.Tensor,
        dense: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        sam = self.model
        count = prompts.shape[0]
        chosen = embedding[image_index]  # [N, C, h, w] and its high-resolution features
        dtype = chosen.embeddings.dtype
        positional = sam.get_image_wide_positional_embeddings().expand(count, -1, -1, -1)
        dense_prompt = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        if dense is not None:
            dense_prompt = dense_prompt + dense
        sparse = prompts.to(dtype)[:, None, None, :]  # [N, point_batch=1, tokens=1, C]
        low_res, iou, _, _ = sam.mask_decoder(
            image_embeddings=chosen.embeddings,
            image_positional_embeddings=positional.to(dtype),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense_prompt.to(dtype),
            multimask_output=False,
            high_resolution_features=list(chosen.high_res),
        )
        return low_res[:, 0, 0], iou[:, 0, 0]  # [N, 4h, 4w], [N]

    def view_pixels(self, resized_size: tuple[int, int]) -> tuple[int, int]:
        """The whole view: ``view`` stretches the image onto the square, no padding."""
        return (self.image_size, self.image_size)

    def image_region(self, resized_size: tuple[int, int], grid: tuple[int, int]) -> tuple[int, int]:
        """The whole grid: ``view`` stretches the image onto the square, no padding."""
        return grid

    def upscale(
        self, low_res: torch.Tensor, resized_size: tuple[int, int], original_size: tuple[int, int]
    ) -> torch.Tensor:
        masks = F.interpolate(low_res[:, None].float(), original_size, mode="bilinear", align_corners=False)
        return masks[:, 0]

    @torch.no_grad()
    def init_from_scratch(self) -> None:
        """PyTorch's default layer init (HF's normal(0.02) leaves the decoder's logits near
        1e-5, as with SAM); the positional matrices are already N(0, 1)."""
        for module in self.model.modules():
            if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
                module.reset_parameters()
