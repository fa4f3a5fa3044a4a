"""The VLM seam: everything lisa-seg needs from a Hugging Face vision-language model.

An adapter is stateless: it is picked by the VLM config's ``model_type`` (``lisa.model.vlms``)
and every method takes the module or config it works on. Code outside ``lisa.model.vlms``
never names a backbone's internals (attribute paths, processor classes, position rules); it
calls these methods. ``docs/architecture.md`` ("The VLM seam") shows how to add a backbone.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel

from lisa.errors import LisaError


@dataclass
class VlmImages:
    """B images as the vision tower takes them."""

    pixels: torch.Tensor  # backbone layout: [B, 3, h, w] (fixed size) or [P, patch_dim] (all patches)
    grids: torch.Tensor | None = None  # [B, 3] (t, h, w) patch grid per image; None for fixed size


class VlmAdapter(ABC):
    """One VLM family (Llava, Qwen2.5-VL, ...). Subclasses set the class attributes and
    implement the abstract methods; the defaults fit the transformers layout
    ``<Family>ForConditionalGeneration(model=<Family>Model(language_model, ...), lm_head)``."""

    model_type: ClassVar[str]  # the HF config's model_type
    # Attribute path of the decoder stack (LoRA, gradient checkpointing, quantization act on it).
    language_model_path: ClassVar[str] = "model.language_model"
    # Submodule names of the vision side: never quantized, never given LoRA.
    vision_module_names: ClassVar[tuple[str, ...]] = ()
    # Text placed before / after the image span in a rendered chat template (template "tokenizer").
    chat_image_prefix: ClassVar[str] = ""
    chat_image_suffix: ClassVar[str] = "\n"

    # ---- building --------------------------------------------------------------------------
    @abstractmethod
    def config_from_dict(self, data: dict[str, Any]) -> PretrainedConfig:
        """The HF config stored in ``lisa_config.json``'s ``vlm`` section."""

    @abstractmethod
    def build(self, config: PretrainedConfig, projector: str) -> PreTrainedModel:
        """A VLM with random (or uninitialised, under ``no_init_weights``) weights."""

    def fixed_image_tokens(self, config: PretrainedConfig) -> int | None:
        """Embeddings every image expands to, or None when it varies per image (dynamic resolution)."""
        return None

    # ---- named parts -----------------------------------------------------------------------
    def language_model(self, vlm: nn.Module) -> nn.Module:
        """The decoder stack: inputs_embeds -> final-norm hidden states."""
        return vlm.get_submodule(self.language_model_path)

    def text_config(self, vlm: nn.Module) -> PretrainedConfig:
        return vlm.config.text_config

    def lm_head(self, vlm: nn.Module) -> nn.Module:
        return vlm.get_output_embeddings()

    # ---- images ----------------------------------------------------------------------------
    @abstractmethod
    def load_image_processor(self, directory: str | Path) -> Any:
        """The image processor saved in a model folder."""

    @abstractmethod
    def image_inputs(self, images: list[np.ndarray], processor: Any) -> VlmImages:
        """RGB uint8 images [H, W, 3] -> what ``image_features`` takes."""

    @abstractmethod
    def image_features(self, vlm: nn.Module, images: VlmImages) -> list[torch.Tensor]:
        """Per image, its projected features [N_i, D] (N_i may differ between images)."""

    def image_token_counts(self, vlm_config: PretrainedConfig, images: VlmImages) -> list[int]:
        """Per image, how many image tokens its prompt holds (without running the tower)."""
        fixed = self.fixed_image_tokens(vlm_config)
        if fixed is None:
            raise LisaError(f"{type(self).__name__} must count image tokens per image")
        return [fixed] * _image_count(images)

    def lm_image_inputs(self, vlm: nn.Module, is_image: torch.Tensor, extra: torch.Tensor) -> dict[str, Any]:
        """Extra keyword inputs of the LM's pass over whole prompts, from the channels of the
        image features beyond the embedding width. is_image [C, L]; extra [M, X], one row per
        image token in row-major order. Only adapters whose features are wider define it."""
        raise LisaError(f"{type(self).__name__} gives no image inputs beyond the embeddings")

    # ---- positions -------------------------------------------------------------------------
    def position_ids(
        self, vlm: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, grids: torch.Tensor | None
    ) -> torch.Tensor | None:
        """Rotary positions of conversations [C, L] (left or right padded); ``grids`` [C, 3] the
        grid of each row's image. None: plain 1-D positions (0, 1, ... over the real tokens)."""
        return None


def _image_count(images: VlmImages) -> int:
    return images.grids.shape[0] if images.grids is not None else images.pixels.shape[0]


def text_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """[C, L] 1-D positions of left-padded rows: 0 at each row's first real token (pads: 0)."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def last_text_position(position_ids: torch.Tensor) -> torch.Tensor:
    """[C, 1]: the position of each row's last token, from 1-D [C, L] or multimodal [3, C, L]
    positions (a prompt ends with text, whose three rotary components are equal)."""
    flat = position_ids if position_ids.ndim == 2 else position_ids[0]
    return flat[:, -1:]
