"""Qwen2.5-VL: a ViT at the image's own resolution (within the processor's pixel budget), so
the number of image tokens varies per image; multimodal 3-D rotary positions (temporal,
height, width) from the model's ``get_rope_index``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

from lisa.errors import LisaError
from lisa.model.vlms.base import VlmAdapter, VlmImages


class Qwen2_5_VLAdapter(VlmAdapter):
    model_type = "qwen2_5_vl"
    config_class: type = Qwen2_5_VLConfig
    model_class: type = Qwen2_5_VLForConditionalGeneration
    vision_module_names = ("visual",)
    chat_image_prefix = "<|vision_start|>"
    chat_image_suffix = "<|vision_end|>"

    def config_from_dict(self, data: dict[str, Any]):
        return self.config_class.from_dict(data)

    def build(self, config, projector: str) -> nn.Module:
        if projector != "mlp":
            raise LisaError(f"{self.model_type} has its own patch merger; projector must be 'mlp', got {projector!r}")
        return self.model_class(config)

    def load_image_processor(self, directory: str | Path) -> Qwen2VLImageProcessorPil:
        return Qwen2VLImageProcessorPil.from_pretrained(str(directory))

    def image_inputs(self, images: list[np.ndarray], processor: Any) -> VlmImages:
        arrays = [np.asarray(image) for image in images]
        out = processor(images=arrays, return_tensors="pt", input_data_format="channels_last")
        return VlmImages(out["pixel_values"], out["image_grid_thw"])  # [P, patch_dim], [B, 3]

    def image_features(self, vlm: nn.Module, images: VlmImages) -> list[torch.Tensor]:
        grids = images.grids.to(images.pixels.device)
        output = vlm.model.get_image_features(pixel_values=images.pixels.to(vlm.dtype), image_grid_thw=grids, return_dict=True)
        return list(output.pooler_output)  # B x [N_i, D]

    def image_token_counts(self, vlm_config, images: VlmImages) -> list[int]:
        merge = int(vlm_config.vision_config.spatial_merge_size)
        return (images.grids.prod(-1) // merge**2).tolist()

    def position_ids(
        self, vlm: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, grids: torch.Tensor | None
    ) -> torch.Tensor:
        """[3, C, L]: text tokens count up by one on all three axes; an image's tokens take
        (t, row, column) offsets and the text after it continues past its largest side."""
        is_image = input_ids == vlm.config.image_token_id
        has_image = is_image.any(-1)
        row_grids = None if grids is None else grids.to(input_ids.device)[has_image]
        positions, _ = vlm.model.get_rope_index(
            input_ids, mm_token_type_ids=is_image.int(), image_grid_thw=row_grids, attention_mask=attention_mask
        )
        return positions
