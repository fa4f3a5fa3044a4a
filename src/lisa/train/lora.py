"""LoRA on the language model only (as the official ``train_ds.py``): q/v projections of the LLM's attention.

Adapters are injected in place into the VLM adapter's language model (``vlm.model.language_model``
for Llava and Qwen2.5-VL; peft's ``inject_adapter_in_model``), so the vision tower's and SAM's
own ``q_proj`` / ``v_proj`` are never matched and every other module keeps its name. Merging writes ``W + (alpha / r) * B @ A`` back
into each wrapped Linear and puts the plain Linear back in place.
"""

from __future__ import annotations

from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from lisa.errors import LisaError
from lisa.model.lisa import LisaModel
from lisa.train.config import LoraSection

def lora_prefix(model: LisaModel) -> str:
    """State-dict prefix of the modules LoRA wraps ("vlm.model.language_model.")."""
    return f"vlm.{model.adapter.language_model_path}."


def language_model(model: LisaModel) -> nn.Module:
    return model.adapter.language_model(model.vlm)


def lora_targets(model: LisaModel, suffixes: list[str]) -> list[str]:
    """Names (relative to the language model) of its Linear layers ending in one of ``suffixes``."""
    names = [
        name for name, module in language_model(model).named_modules()
        if isinstance(module, nn.Linear) and name.rsplit(".", 1)[-1] in suffixes
    ]
    if not names:
        raise LisaError(f"no Linear layer named {suffixes} in the language model; check lora.targets")
    return names


def add_lora(model: LisaModel, settings: LoraSection) -> list[str]:
    """Inject LoRA adapters; returns the wrapped module names (relative to the language model)."""
    targets = lora_targets(model, settings.targets)
    config = LoraConfig(
        r=settings.r, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
        bias="none", target_modules=targets,
    )
    inject_adapter_in_model(config, language_model(model))
    return targets


def merge_lora(model: LisaModel) -> int:
    """Merge every adapter into its base Linear and unwrap it; returns how many were merged."""
    root = language_model(model)
    wrapped = [(name, module) for name, module in root.named_modules() if isinstance(module, BaseTunerLayer)]
    for name, module in wrapped:
        module.merge()
        parent_name, _, child = name.rpartition(".")
        parent = root.get_submodule(parent_name) if parent_name else root
        setattr(parent, child, module.get_base_layer())
    return len(wrapped)
