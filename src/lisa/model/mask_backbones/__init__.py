"""Mask backbones (SAM, SAM 2) behind one seam: see ``base.MaskBackbone`` and docs/architecture.md."""

from lisa.model.mask_backbones.base import MaskBackbone
from lisa.model.mask_backbones.embedding import ImageEmbedding
from lisa.model.mask_backbones.registry import (
    BACKBONES,
    backbone_class,
    backbone_of_config,
    load_mask_model,
    mask_backbone,
)

__all__ = ["BACKBONES", "ImageEmbedding", "MaskBackbone", "backbone_class", "backbone_of_config", "load_mask_model", "mask_backbone"]
