"""SAM as LISA uses it: a frozen image encoder and a mask decoder prompted by one sparse token.

Built on transformers' ``SamModel``; no SAM code is vendored. As in the official LISA
(``model/LISA.py``: the prompt encoder gets ``text_embeds`` and no points, boxes or masks), the
dense prompt is SAM's learned ``no_mask_embed`` and ``multimask_output=False`` keeps mask token
0; ``postprocess_masks`` there upscales as ``upscale_masks`` does here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import SamModel


@torch.no_grad()
def init_sam_from_scratch(sam: SamModel) -> SamModel:
    """Initialise a SAM that will be trained from scratch, as the original SAM code does.

    HF's init (normal, std 0.02) leaves the decoder's mask logits near 1e-5, and HF scales the
    random-Fourier positional matrix by hidden_size // 2 (harmless when a checkpoint overwrites
    it), which turns a from-scratch PE into a spatial hash that cannot generalise. The original
    uses PyTorch's default (Kaiming-uniform) layer init and a fixed scale-1 Gaussian matrix.
    """
    for module in sam.modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)):
            module.reset_parameters()
    positional = sam.shared_image_embedding.positional_embedding
    positional.copy_(torch.randn_like(positional))
    positional.requires_grad_(False)
    return sam


def encode_images(sam: SamModel, pixels: torch.Tensor) -> torch.Tensor:
    """[B, 3, S, S] normalised, padded pixels -> image embeddings [B, C, h, w]; without grad
    unless the encoder is being trained."""
    if torch.is_grad_enabled() and any(p.requires_grad for p in sam.vision_encoder.parameters()):
        return sam.vision_encoder(pixels.to(sam.dtype))[0]
    return sam.get_image_embeddings(pixels.to(sam.dtype))


def decode_masks(
    sam: SamModel, image_embeddings: torch.Tensor, prompts: torch.Tensor, image_index: torch.Tensor,
    dense_extra: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One mask per prompt, all images in one decoder call.

    image_embeddings [B, C, h, w]; prompts [N, C] (projected [SEG] states); image_index [N]
    -> low-resolution mask logits [N, 4h, 4w] and the decoder's IoU estimates [N].
    dense_extra [N, C, h, w]: added to the no-mask dense prompt (None: LISA's prompt, unchanged).
    """
    count = prompts.shape[0]
    embeddings = image_embeddings[image_index]  # [N, C, h, w]
    positional = sam.get_image_wide_positional_embeddings().expand(count, -1, -1, -1)
    dense = sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
    if dense_extra is not None:
        dense = dense + dense_extra
    sparse = prompts.to(embeddings.dtype)[:, None, None, :]  # [N, point_batch=1, tokens=1, C]
    low_res, iou = sam.mask_decoder(
        image_embeddings=embeddings,
        image_positional_embeddings=positional.to(embeddings.dtype),
        sparse_prompt_embeddings=sparse,
        dense_prompt_embeddings=dense.to(embeddings.dtype),
        multimask_output=False,
    )
    return low_res[:, 0, 0], iou[:, 0, 0]


def upscale_masks(
    low_res: torch.Tensor, input_size: int, resized_size: tuple[int, int], original_size: tuple[int, int]
) -> torch.Tensor:
    """[n, h, w] logits -> [n, H, W] float32 logits: to the SAM input size, crop the padding,
    then to the original size (bilinear, align_corners=False)."""
    masks = low_res[:, None].float()
    masks = F.interpolate(masks, (input_size, input_size), mode="bilinear", align_corners=False)
    masks = masks[..., : resized_size[0], : resized_size[1]]
    masks = F.interpolate(masks, original_size, mode="bilinear", align_corners=False)
    return masks[:, 0]


def mask_scores(logits: torch.Tensor) -> torch.Tensor:
    """[n, H, W] logits -> [n] float32: the mean foreground probability inside each binary mask
    (logit > 0), 0 for an empty mask. (The decoder's own IoU estimate is not used: LISA's
    training never supervises it.)"""
    binary = logits > 0
    probs = logits.sigmoid()
    area = binary.flatten(1).sum(-1)
    score = torch.where(area > 0, (probs * binary).flatten(1).sum(-1) / area.clamp(min=1), torch.zeros_like(area, dtype=probs.dtype))
    return score.float()
