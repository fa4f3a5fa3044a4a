"""Which parameters train (as the official ``train_ds.py``): LoRA A/B, the [SEG] rows of embed_tokens and lm_head
(or the whole matrices, as the official code), the mask decoder, the seg head and a presence head.
Everything else (LLM base weights, final norm, vision tower, projector, the mask backbone's image
and prompt encoders) is frozen, unless a recipe other than "lisa" says otherwise. Which mask-backbone parameters are its "image_encoder" and
"mask_decoder" is the adapter's call (``MaskBackbone.part``).

The row-only option keeps the whole matrix as a parameter and zeroes the other rows'
gradients with a hook; with weight decay 0, AdamW then leaves those rows bit-identical.
"""

from __future__ import annotations

import torch
from torch import nn

from lisa.errors import LisaError
from lisa.model.lisa import LisaModel
from lisa.model.mask_backbones import MaskBackbone
from lisa.model.mask_backbones.sam import SamBackbone

MASK_BACKBONE = "sam."  # where LisaModel keeps the mask backbone's module
# Name prefixes outside the mask backbone, and the backbone's parts ("mask_decoder", "image_encoder").
TRAINED_MODULES = ("seg_head.", "presence_head.", "mask_decoder")
# "lisa": the paper's recipe. "vlm": aligning a from-scratch VLM before the LISA stage (vision
# tower, projector, language model and both embedding matrices; SAM and seg head frozen).
# "vlm_language": "vlm" with the vision tower and projector frozen (Llava's module names): text
# training that must not wash out image tokens trained for what and where (lisa-tiny's stage 2a).
# "lisa_sam_encoder": the paper's recipe plus SAM's image encoder, for a SAM whose features
# are too poor to freeze (a from-scratch SAM trained with geometric prompts only).
# "mask_path": the seg head and the mask decoder only; the whole VLM (embeddings included) is
# frozen, so the model's text and [SEG] states stay exactly its base's and only its masks change.
# "lisa_vision": the paper's recipe plus the VLM's vision side (the adapter's vision_module_names:
# Llava's vision tower and projector), for a small VLM whose image tokens do not say where things
# are: the mask loss then reaches the tokens the [SEG] state and the seg head read (not in the paper).
# "lisa_vlm": the paper's recipe with the whole VLM trained instead of LoRA (lora: null), for a VLM
# small enough that LoRA's rank, not memory, is what limits it (not in the paper).
VISION_SIDE = "vision_side"  # stands for the adapter's vision_module_names
RECIPES = {"lisa": TRAINED_MODULES, "vlm": ("vlm.",), "vlm_language": ("vlm.model.language_model.", "vlm.lm_head."),
           "lisa_sam_encoder": (*TRAINED_MODULES, "image_encoder"), "mask_path": TRAINED_MODULES,
           "lisa_vision": (*TRAINED_MODULES, VISION_SIDE), "lisa_vlm": (*TRAINED_MODULES, "vlm.")}
# Recipes that leave the embedding matrices alone (every other one trains them, or their new rows).
FROZEN_EMBEDDINGS = ("mask_path",)


def embedding_params(model: LisaModel) -> list[nn.Parameter]:
    """embed_tokens and lm_head weights (one tensor when they are tied)."""
    params = [model.vlm.get_input_embeddings().weight, model.vlm.get_output_embeddings().weight]
    return list({id(p): p for p in params}.values())


def is_vision_side(name: str, vision_modules: tuple[str, ...]) -> bool:
    """Whether a VLM parameter lies in one of its vision modules ("vlm.model.vision_tower...")."""
    return name.startswith("vlm.") and any(part in vision_modules for part in name.split(".")[1:3])


def is_trained(name: str, recipe: str = "lisa", backbone: type[MaskBackbone] = SamBackbone,
               vision_modules: tuple[str, ...] = ()) -> bool:
    if "lora_" in name:
        return True
    trained = RECIPES[recipe]
    if name.startswith(MASK_BACKBONE):
        return backbone.part(name[len(MASK_BACKBONE):]) in trained
    if VISION_SIDE in trained and is_vision_side(name, vision_modules):
        return True
    return name.startswith(tuple(p for p in trained if p.endswith(".")))


def set_trainable(
    model: LisaModel, token_rows: list[int] | None, recipe: str = "lisa"
) -> list[torch.utils.hooks.RemovableHandle]:
    """Freeze / unfreeze; ``token_rows`` None trains the whole embedding matrices, else only
    those rows (hooks returned so that callers can remove them); a FROZEN_EMBEDDINGS recipe
    trains neither."""
    backbone = type(model.mask_backbone)
    vision_modules = type(model.adapter).vision_module_names
    for name, param in model.named_parameters():
        param.requires_grad_(is_trained(name, recipe, backbone, vision_modules))
    if VISION_SIDE in RECIPES[recipe] and not any(is_vision_side(name, vision_modules) for name, _ in model.named_parameters()):
        raise LisaError(f"recipe {recipe!r} trains the VLM's vision side, but {type(model.adapter).__name__} names "
                        f"no vision module of this model ({vision_modules or 'none'})")
    handles = []
    if recipe in FROZEN_EMBEDDINGS:
        return handles
    for param in embedding_params(model):
        param.requires_grad_(True)
        if token_rows is not None:
            mask = torch.zeros(param.shape[0], 1, dtype=param.dtype, device=param.device)
            mask[token_rows] = 1
            handles.append(param.register_hook(lambda grad, mask=mask: grad * mask.to(grad.dtype)))
    return handles


def trainable_names(model: LisaModel) -> list[str]:
    return [name for name, param in model.named_parameters() if param.requires_grad]


def trainable_state(model: LisaModel) -> dict[str, torch.Tensor]:
    """The tensors a checkpoint holds: every trainable parameter, and the running statistics of
    trainable BatchNorm layers (they change while training too), by name."""
    state = {name: param.detach() for name, param in model.named_parameters() if param.requires_grad}
    for prefix, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and any(p.requires_grad for p in module.parameters()):
            state |= {f"{prefix}.{name}": buffer.detach() for name, buffer in module.named_buffers(recurse=False)}
    return state


def count_parameters(model: LisaModel) -> tuple[int, int]:
    """(trainable, total) element counts."""
    seen: dict[int, nn.Parameter] = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in seen.values())
    trainable = sum(p.numel() for p in seen.values() if p.requires_grad)
    return trainable, total
