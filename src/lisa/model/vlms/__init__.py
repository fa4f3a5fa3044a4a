"""VLM adapters, keyed by the Hugging Face config's ``model_type`` (see ``base.VlmAdapter``)."""

from __future__ import annotations

from typing import Any

from torch import nn

from lisa.errors import LisaError
from lisa.model.vlms.base import VlmAdapter, VlmImages, last_text_position, text_positions

__all__ = ["VlmAdapter", "VlmImages", "adapter_for", "adapter_of", "last_text_position", "supported", "text_positions"]


def _registry() -> dict[str, VlmAdapter]:
    from lisa.model.vlms.llava import LlavaAdapter
    from lisa.model.vlms.qwen2_5_vl import Qwen2_5_VLAdapter
    from lisa.model.vlms.qwen3_vl import Qwen3VLAdapter

    adapters: list[VlmAdapter] = [LlavaAdapter(), Qwen2_5_VLAdapter(), Qwen3VLAdapter()]
    return {adapter.model_type: adapter for adapter in adapters}


_ADAPTERS: dict[str, VlmAdapter] = {}


def supported() -> list[str]:
    if not _ADAPTERS:
        _ADAPTERS.update(_registry())
    return sorted(_ADAPTERS)


def adapter_for(vlm_config: dict[str, Any] | str) -> VlmAdapter:
    """The adapter of a VLM config (as a dict, e.g. ``LisaConfig.vlm``) or of a model_type."""
    model_type = vlm_config if isinstance(vlm_config, str) else vlm_config.get("model_type")
    names = supported()
    if model_type not in _ADAPTERS:
        raise LisaError(f"unsupported VLM model_type {model_type!r}; supported: {', '.join(names)}")
    return _ADAPTERS[model_type]


def adapter_of(vlm: nn.Module) -> VlmAdapter:
    """The adapter of a built VLM module."""
    return adapter_for(str(vlm.config.model_type))
