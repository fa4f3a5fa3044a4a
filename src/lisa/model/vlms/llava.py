"""Llava (LLaVA-1.5 in HF format, and LISA's LLaVA-v1 with a linear projector): CLIP tower,
fixed-size square images, a fixed number of image tokens, 1-D rotary positions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import CLIPImageProcessorPil, LlavaConfig, LlavaForConditionalGeneration

from lisa.data.transforms import vlm_view
from lisa.errors import LisaError
from lisa.model.projector import LinearProjector
from lisa.model.vlms.base import VlmAdapter, VlmImages


class LlavaAdapter(VlmAdapter):
    model_type = "llava"
    vision_module_names = ("vision_tower", "multi_modal_projector")

    def config_from_dict(self, data: dict[str, Any]) -> LlavaConfig:
        return LlavaConfig.from_dict(data)

    def build(self, config: LlavaConfig, projector: str) -> LlavaForConditionalGeneration:
        vlm = LlavaForConditionalGeneration(config)
        if projector == "linear":  # LLaVA-v1 / released LISA
            vision_hidden = config.vision_config.hidden_size
            vlm.model.multi_modal_projector = LinearProjector(vision_hidden, config.text_config.hidden_size)
        elif projector != "mlp":
            raise LisaError(f"unknown projector {projector!r}; supported: mlp, linear")
        return vlm

    def fixed_image_tokens(self, config: LlavaConfig) -> int:
        """Patches of the square input (+ CLS when the strategy keeps it)."""
        vision = config.vision_config
        patches = (vision.image_size // vision.patch_size) ** 2
        keeps_cls = config.vision_feature_select_strategy == "full"
        return patches + (1 if keeps_cls else 0)

    def load_image_processor(self, directory: str | Path) -> CLIPImageProcessorPil:
        return CLIPImageProcessorPil.from_pretrained(str(directory))

    def image_inputs(self, images: list[np.ndarray], processor: Any) -> VlmImages:
        return VlmImages(vlm_view(images, processor))  # [B, 3, h, w]

    def image_features(self, vlm: nn.Module, images: VlmImages) -> list[torch.Tensor]:
        output = vlm.model.get_image_features(pixel_values=images.pixels.to(vlm.dtype), return_dict=True)
        return list(output.pooler_output)  # B x [N_img, D]
