"""Qwen3-VL: Qwen2.5-VL's contract (dynamic resolution, the Qwen2-VL processor with patch 16,
3-D rotary positions from ``get_rope_index``) plus DeepStack: features of intermediate ViT
layers are added to the hidden states of the first LM layers at the image positions.

An image's features are packed as [N_i, (1 + K) * D]: the input embeddings, then the K
DeepStack levels, so that every per-image path (the pipeline's cache, batching) carries them
unchanged; ``lm_image_inputs`` unpacks them into the LM's ``visual_pos_masks`` and
``deepstack_visual_embeds`` for a pass over whole prompts.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

from lisa.model.vlms.base import VlmImages
from lisa.model.vlms.qwen2_5_vl import Qwen2_5_VLAdapter


class Qwen3VLAdapter(Qwen2_5_VLAdapter):
    model_type = "qwen3_vl"
    config_class = Qwen3VLConfig
    model_class = Qwen3VLForConditionalGeneration

    def image_features(self, vlm: nn.Module, images: VlmImages) -> list[torch.Tensor]:
        grids = images.grids.to(images.pixels.device)
        output = vlm.model.get_image_features(pixel_values=images.pixels.to(vlm.dtype), image_grid_thw=grids, return_dict=True)
        levels = output.deepstack_features  # K x (B x [N_i, D])
        return [torch.cat([main, *(level[i] for level in levels)], dim=-1)  # [N_i, (1 + K) * D]
                for i, main in enumerate(output.pooler_output)]

    def lm_image_inputs(self, vlm: nn.Module, is_image: torch.Tensor, extra: torch.Tensor) -> dict[str, Any]:
        width = vlm.get_input_embeddings().embedding_dim
        return {"visual_pos_masks": is_image, "deepstack_visual_embeds": list(extra.split(width, dim=-1))}
