"""Tiny and extreme images: the VLM and SAM views keep the right pixels (channels-last is explicit)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from transformers import CLIPImageProcessorPil

from lisa.data.transforms import MAX_VLM_ASPECT, sam_resized_size, vlm_view
from lisa.model.build import build_image_processor

CLIP = CLIPImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})


@pytest.mark.parametrize("size", [(1, 1), (1, 2), (2, 1), (3, 1), (1, 3), (3, 3), (4, 4), (3, 7), (1, 4096), (4096, 1)])
@pytest.mark.parametrize("processor", [build_image_processor(16), CLIP], ids=["lisa-tiny", "clip"])
def test_tiny_images_are_read_channels_last(size, processor) -> None:
    array = np.random.default_rng(sum(size)).integers(0, 256, (*size, 3), dtype=np.uint8)
    expected = processor(images=[Image.fromarray(array)], return_tensors="pt")["pixel_values"]  # PIL: unambiguous
    assert np.array_equal(vlm_view([array], processor).numpy(), expected.numpy())


def test_sam_sizes_never_reach_zero() -> None:
    assert sam_resized_size(1, 4096, 1024) == (1, 1024) and sam_resized_size(4096, 1, 1024) == (1024, 1)
    assert sam_resized_size(480, 640, 1024) == (768, 1024)  # the official rounding, unchanged


def test_extreme_aspect_keeps_the_centre_for_clip() -> None:
    """Beyond 4096:1 a centre-cropping processor sees only the centre (it would cut the rest anyway)."""
    width = 3 * MAX_VLM_ASPECT
    array = np.zeros((1, width, 3), np.uint8)
    array[:, width // 2 - 8:width // 2 + 8] = 200  # the centre, the part the crop keeps
    pixels = vlm_view([array], CLIP)
    assert pixels.shape == (1, 3, 16, 16) and float(pixels.max()) > 0
