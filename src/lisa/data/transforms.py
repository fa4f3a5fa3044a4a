"""The two views of one image, shared by training, evaluation, chat and the demo.

- VLM view: the checkpoint's own CLIP image processor (PIL backend): e.g. shortest side 224,
  centre crop, CLIP mean/std.
- SAM view (as the official ``ResizeLongestSide`` + normalise + pad in its datasets and ``chat.py``): longest side to the SAM input size with round-half-up sizes,
  PIL bilinear, normalise on the 0-255 scale, zero-pad bottom/right (after normalising, so the
  pad is the mean colour).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass
class SamView:
    pixels: torch.Tensor  # [3, S, S] float32, normalised and padded
    resized_size: tuple[int, int]  # (h', w') before padding
    original_size: tuple[int, int]  # (H, W)


def sam_resized_size(height: int, width: int, target: int) -> tuple[int, int]:
    scale = target / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def sam_view(image: np.ndarray, target: int) -> SamView:
    """image: RGB uint8 [H, W, 3] -> SAM input of side ``target``."""
    height, width = image.shape[:2]
    new_h, new_w = sam_resized_size(height, width, target)
    resized = np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR), dtype=np.float32)
    normalised = (resized - np.array(SAM_PIXEL_MEAN, np.float32)) / np.array(SAM_PIXEL_STD, np.float32)
    padded = np.zeros((target, target, 3), np.float32)
    padded[:new_h, :new_w] = normalised
    return SamView(torch.from_numpy(padded).permute(2, 0, 1).contiguous(), (new_h, new_w), (height, width))


def vlm_view(images: list[np.ndarray], image_processor) -> torch.Tensor:
    """RGB uint8 images -> [B, 3, h, w] float32 for the vision tower."""
    return image_processor(images=images, return_tensors="pt")["pixel_values"]
