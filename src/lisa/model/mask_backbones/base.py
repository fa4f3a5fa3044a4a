"""The mask-backbone seam: what LISA needs from a promptable mask model.

LISA drives a mask model in four steps: the image view (resize, normalise, pad), the image
encoder (``embed``: once per image, cached by the pipeline and the trainer), the mask decoder
prompted by one sparse token (``decode``: the projected [SEG] state), and upscaling the
low-resolution logits to the original image (``upscale``). An adapter implements them for one
Hugging Face model class; nothing outside the adapters reads the model's internals.

An adapter wraps the module (``LisaModel.sam``, kept under that name so that checkpoints keep
their keys) and holds no state of its own: ``LisaModel.mask_backbone`` builds one on demand, so
swapping or moving the module never leaves a stale adapter behind.
"""

from __future__ import annotations

import math

from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from lisa.data.transforms import SamView
from lisa.model.mask_backbones.embedding import ImageEmbedding

Part = Literal["image_encoder", "mask_decoder"]


class MaskBackbone(ABC):
    model_type: ClassVar[str]  # the Hugging Face config's model_type this adapter serves
    config_class: ClassVar[Any]  # e.g. transformers.SamConfig
    model_class: ClassVar[Any]  # e.g. transformers.SamModel

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.image_size = self.input_size(model.config.to_dict())

    # ---- from the config alone -------------------------------------------------------
    @staticmethod
    @abstractmethod
    def input_size(config: dict[str, Any]) -> int:
        """Side S of the square image the encoder takes."""

    @staticmethod
    def prompt_dim(config: dict[str, Any]) -> int:
        """Width of a sparse prompt embedding (the seg head's output size): the prompt
        encoder's width, where SAM, SAM 2 and SAM 3's tracker all keep it."""
        return int(config["prompt_encoder_config"]["hidden_size"])

    @staticmethod
    @abstractmethod
    def part(name: str) -> Part | None:
        """Which part a parameter (named inside the module) belongs to, for training recipes:
        "image_encoder" (frozen in LISA's recipe), "mask_decoder" (trained), None (frozen)."""

    # ---- the four steps ----------------------------------------------------------------
    @abstractmethod
    def view(self, image: np.ndarray) -> SamView:
        """RGB uint8 [H, W, 3] -> the encoder's input [3, S, S] and the sizes ``upscale`` needs."""

    @abstractmethod
    def embed(self, pixels: torch.Tensor) -> ImageEmbedding:
        """[B, 3, S, S] views -> what the decoder needs; without grad unless the encoder trains."""

    @abstractmethod
    def decode(
        self, embedding: ImageEmbedding, prompts: torch.Tensor, image_index: torch.Tensor,
        dense: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One mask per prompt, all in one decoder call: prompts [N, prompt_dim] over images
        image_index [N] -> low-resolution logits [N, h, w] and the decoder's IoU estimates [N].
        dense [N, prompt_dim, *grid]: added to the no-mask dense prompt (None: LISA's, unchanged)."""

    def view_pixels(self, resized_size: tuple[int, int]) -> tuple[int, int]:
        """Rows and columns of the S x S view that the image fills, from the top left (SAM's
        layout: the resized image, then padding)."""
        return (int(resized_size[0]), int(resized_size[1]))

    def image_region(self, resized_size: tuple[int, int], grid: tuple[int, int]) -> tuple[int, int]:
        """Rows and columns of the decoder's grid that the image fills (the rest is padding):
        ``view`` puts the resized image at the top left of an S x S square (SAM's layout)."""
        return (math.ceil(resized_size[0] * grid[0] / self.image_size),
                math.ceil(resized_size[1] * grid[1] / self.image_size))

    @abstractmethod
    def upscale(
        self, low_res: torch.Tensor, resized_size: tuple[int, int], original_size: tuple[int, int]
    ) -> torch.Tensor:
        """[n, h, w] logits of one image -> [n, H, W] float32 logits at its original size."""

    @abstractmethod
    def init_from_scratch(self) -> None:
        """Re-initialise random weights for a backbone that will be trained from scratch."""

    # ---- shared helpers ----------------------------------------------------------------
    def encoder_trains(self) -> bool:
        """True when some image-encoder parameter requires grad (and grad is enabled)."""
        if not torch.is_grad_enabled():
            return False
        return any(p.requires_grad for name, p in self.model.named_parameters() if self.part(name) == "image_encoder")

    def compile_encoder(self) -> None:
        """torch.compile the image encoder (the GPU path; the module's own ``compile``)."""
        self.model.vision_encoder.compile()
