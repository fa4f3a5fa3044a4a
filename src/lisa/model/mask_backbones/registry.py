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
from lisa.model.mask_backbones.sam3_tracker import Sam3TrackerBackbone

BACKBONES: dict[str, type[MaskBackbone]] = {
    backbone.model_type: backbone for backbone in (SamBackbone, Sam2Backbone, Sam3TrackerBackbone)
}


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
    """A Hugging Face mask-model folder (any registered model_type) -> the module, through
    transformers' own loader (which maps the checkpoint's key names, e.g. SAM 3's); a weight the
    folder lacks is an error, never a silently random tensor."""
    directory = Path(directory)
    kind = folder_model_type(directory)
    if kind is None:
        raise LisaError(f"{directory} is not a Hugging Face mask-model folder (no readable config.json)")
    model, info = backbone_class(kind).model_class.from_pretrained(str(directory), output_loading_info=True)
    if info["missing_keys"]:
        missing = sorted(info["missing_keys"])
        raise LisaError(f"{directory}: the checkpoint lacks {len(missing)} weights of a {kind} model (e.g. {missing[0]})")
    return model
