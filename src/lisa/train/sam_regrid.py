"""A trained SAM re-gridded to a smaller patch: a finer image embedding (and mask grid) that
starts from what the coarse SAM learned, instead of from random weights.

With patch p -> p / r, the patch kernel is r x r sum-pooled, so that a fine patch embeds what
the coarse kernel would see of an image upsampled r times (exact for nearest upsampling); the
absolute position embedding and the relative position tables are interpolated to the finer grid,
and windows grow r times so that each still covers the same pixels. Prompt encoder and mask
decoder do not depend on the grid and are copied. The decoder's 4x upscaling then gives masks
r times finer (64x64 -> 128x128 for lisa-tiny at patch 8).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from transformers import SamModel

from lisa.errors import LisaError


def _stretch_table(table: torch.Tensor, length: int) -> torch.Tensor:
    """A relative-position table [2w - 1, d] linearly resampled to [length, d]."""
    return F.interpolate(table.T[None], size=length, mode="linear", align_corners=True)[0].T.contiguous()


@torch.no_grad()
def regrid_sam(sam: SamModel, patch: int) -> SamModel:
    vision = sam.config.vision_config
    if patch == vision.patch_size:
        return sam
    if patch < 1 or vision.patch_size % patch or vision.image_size % patch:
        raise LisaError(f"regrid_patch {patch} must divide the SAM's patch size {vision.patch_size} "
                        f"and image size {vision.image_size}")
    ratio = vision.patch_size // patch
    config = copy.deepcopy(sam.config)
    config.vision_config.patch_size = patch
    config.vision_config.window_size = vision.window_size * ratio
    config.prompt_encoder_config.patch_size = patch
    config.prompt_encoder_config.image_embedding_size = vision.image_size // patch
    fine = SamModel(config).to(sam.dtype)
    old, new = sam.state_dict(), fine.state_dict()
    state = {}
    for name, target in new.items():
        value = old[name]
        if name.endswith("patch_embed.projection.weight"):
            value = F.avg_pool2d(value, ratio) * ratio * ratio  # sum over each r x r block
        elif name.endswith("pos_embed"):
            value = F.interpolate(value.permute(0, 3, 1, 2), size=target.shape[1:3], mode="bilinear",
                                  align_corners=False).permute(0, 2, 3, 1)
        elif name.endswith(("rel_pos_h", "rel_pos_w")):
            value = _stretch_table(value, target.shape[0])
        if value.shape != target.shape:
            raise LisaError(f"regrid_sam: {name} has shape {tuple(value.shape)}, expected {tuple(target.shape)}")
        state[name] = value.contiguous()
    fine.load_state_dict(state)
    frozen = {name for name, p in sam.named_parameters() if not p.requires_grad}
    for name, p in fine.named_parameters():
        p.requires_grad_(name not in frozen)
    return fine
