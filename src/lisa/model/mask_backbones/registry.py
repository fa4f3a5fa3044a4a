"""Mask backbones by the Hugging Face ``model_type`` in their config: add a new one here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torch import nn

from lisa.errors import LisaError
from lisa.model.mask_backbones.base import MaskBackbone
from lisa.model.mask_backbones.sam import SamBackbone
from lisa.model.mask_backbones.sam2 import Sam2Backbone

BACKBONES: dict[str, type[MaskBackbone]] = {SamBackbone.model_type: SamBackbone, Sam2Backbone.model_type: Sam2Backbone}


def backbone_class(model_type: str) -> type[MaskBackbone]:
    if model_type not in BACKBONES:
        raise LisaError(f"mask backbone model_type {model_type!r} is not supported (supported: {', '.join(BACKBONES)})")
    return BACKBONES[model_type]


def backbone_of_config(config: dict[str, Any]) -> type[MaskBackbone]:
    """The adapter class of a stored config dict (``LisaConfig.sam``); older files are SAM's."""
    return backbone_class(str(config.get("model_type", SamBackbone.model_type)))


def mask_backbone(model: nn.Module) -> MaskBackbone:
    """The adapter around a mask model module (SamModel, Sam2Model)."""
    return backbone_class(model.config.model_type)(model)


def folder_model_type(directory: Path) -> str | None:
    """config.json's model_type of a Hugging Face folder, None without a readable one."""
    try:
        return json.loads((directory / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return None


def load_mask_model(directory: str | Path) -> nn.Module:
    """A Hugging Face mask-model folder (any registered model_type) -> the module."""
    directory = Path(directory)
    kind = folder_model_type(directory)
    if kind is None:
        raise LisaError(f"{directory} is not a Hugging Face mask-model folder (no readable config.json)")
    return backbone_class(kind).model_class.from_pretrained(str(directory))
