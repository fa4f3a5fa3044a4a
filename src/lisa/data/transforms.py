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
_SAM_MEAN = torch.tensor(SAM_PIXEL_MEAN, dtype=torch.float32)[:, None, None]
_SAM_STD = torch.tensor(SAM_PIXEL_STD, dtype=torch.float32)[:, None, None]


@dataclass
class SamView:
    pixels: torch.Tensor  # [3, S, S] float32, normalised and padded
    resized_size: tuple[int, int]  # (h', w') before padding
    original_size: tuple[int, int]  # (H, W)


def sam_resized_size(height: int, width: int, target: int) -> tuple[int, int]:
    """Longest side to ``target``, round half up; never below 1 px (a 1x4096 image stays 1 px high,
    where the official formula gives 0 and fails)."""
    scale = target / max(height, width)
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def sam_view(image: np.ndarray, target: int) -> SamView:
    """image: RGB uint8 [H, W, 3] -> SAM input of side ``target``."""
    height, width = image.shape[:2]
    new_h, new_w = sam_resized_size(height, width, target)
    resized = np.array(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))  # writable, for torch
    # Channels-first from the start: the same float32 subtract and divide per element as on
    # [H, W, 3], without the numpy temporaries and the final transposing copy.
    pixels = torch.from_numpy(resized).permute(2, 0, 1).float()
    normalised = (pixels - _SAM_MEAN) / _SAM_STD
    padded = torch.zeros(3, target, target)
    padded[:, :new_h, :new_w] = normalised
    return SamView(padded, (new_h, new_w), (height, width))


MAX_VLM_ASPECT = 4096  # longer / shorter side; beyond it only the centre of the long side is kept


def _crops_centre(image_processor) -> bool:
    """True for CLIP's own recipe: shortest side to a size, then a centre crop."""
    size = getattr(image_processor, "size", None) or {}
    return bool(getattr(image_processor, "do_center_crop", False)) and "shortest_edge" in size


def _bounded_aspect(image: np.ndarray) -> np.ndarray:
    """The centre of an image longer than MAX_VLM_ASPECT:1 (for a centre-cropping processor). It
    scales the short side to its crop size and keeps the centre square, so the cut part is never
    seen; without the cut a 1 x 10^8 image would first be resized to 224 x 2 * 10^10 pixels."""
    height, width = image.shape[:2]
    if width > height * MAX_VLM_ASPECT:
        keep = height * MAX_VLM_ASPECT
        return image[:, (width - keep) // 2:(width - keep) // 2 + keep]
    if height > width * MAX_VLM_ASPECT:
        keep = width * MAX_VLM_ASPECT
        return image[(height - keep) // 2:(height - keep) // 2 + keep]
    return image


def vlm_view(images: list[np.ndarray], image_processor) -> torch.Tensor:
    """RGB uint8 images [H, W, 3] -> [B, 3, h, w] float32 for the vision tower.

    The layout is given explicitly: left to guess, the processor reads any array whose first
    dimension is 1 or 3 (a 1x1 image, one 1 or 3 px tall, even some 4x4 ones) as channels-first,
    and silently produces the wrong pixels."""
    arrays = [np.asarray(image) for image in images]
    if _crops_centre(image_processor):
        arrays = [_bounded_aspect(image) for image in arrays]
    return image_processor(images=arrays, return_tensors="pt", input_data_format="channels_last")["pixel_values"]


def square_view(image: np.ndarray, target: int, mean: tuple[float, ...], std: tuple[float, ...]) -> SamView:
    """image: RGB uint8 [H, W, 3] -> [3, S, S]: the whole image resized to a square (PIL bilinear,
    no padding, as SAM 2's processor), normalised on the 0-1 scale. ``resized_size`` is (S, S)."""
    height, width = image.shape[:2]
    resized = np.asarray(Image.fromarray(image).resize((target, target), Image.Resampling.BILINEAR), dtype=np.float32) / 255.0
    normalised = (resized - np.array(mean, np.float32)) / np.array(std, np.float32)
    return SamView(torch.from_numpy(normalised).permute(2, 0, 1).contiguous(), (target, target), (height, width))
