"""Which parameters train (as the official ``train_ds.py``): LoRA A/B, the [SEG] rows of embed_tokens and lm_head
(or the whole matrices, as the official code), the mask decoder, the seg head and a presence head.
Everything else (LLM base weights, final norm, vision tower, projector, the mask backbone's image
and prompt encoders) is frozen. Which mask-backbone parameters are its "image_encoder" and
"mask_decoder" is the adapter's call (``MaskBackbone.part``).

The row-only option keeps the whole matrix as a parameter and zeroes the other rows'
gradients with a hook; with weight decay 0, AdamW then leaves those rows bit-identical.
"""

from __future__ import annotations

import torch
from torch import nn

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
RECIPES = {"lisa": TRAINED_MODULES, "vlm": ("vlm.",), "vlm_language": ("vlm.model.language_model.", "vlm.lm_head."),
           "lisa_sam_encoder": (*TRAINED_MODULES, "image_encoder"), "mask_path": TRAINED_MODULES}
# Recipes that leave the embedding matrices alone (every other one trains them, or their new rows).
FROZEN_EMBEDDINGS = ("mask_path",)


def embedding_params(model: LisaModel) -> list[nn.Parameter]:
    """embed_tokens and lm_head weights (one tensor when they are tied)."""
    params = [model.vlm.get_input_embeddings().weight, model.vlm.get_output_embeddings().weight]
    return list({id(p): p for p in params}.values())


def is_trained(name: str, recipe: str = "lisa", backbone: type[MaskBackbone] = SamBackbone) -> bool:
    if "lora_" in name:
        return True
    trained = RECIPES[recipe]
    if name.startswith(MASK_BACKBONE):
        return backbone.part(name[len(MASK_BACKBONE):]) in trained
    return name.startswith(tuple(p for p in trained if p.endswith(".")))


def set_trainable(
    model: LisaModel, token_rows: list[int] | None, recipe: str = "lisa"
) -> list[torch.utils.hooks.RemovableHandle]:
    """Freeze / unfreeze; ``token_rows`` None trains the whole embedding matrices, else only
    those rows (hooks returned so that callers can remove them); a FROZEN_EMBEDDINGS recipe
    trains neither."""
    backbone = type(model.mask_backbone)
    for name, param in model.named_parameters():
        param.requires_grad_(is_trained(name, recipe, backbone))
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
