"""Where a mask lands on a non-square image: the SAM view's size and padding side, and the
upscale -> crop the padding -> resize back, each checked against values computed by hand."""

from __future__ import annotations

import numpy as np
import torch

from lisa.data.transforms import SAM_PIXEL_MEAN, SAM_PIXEL_STD, sam_resized_size, sam_view
from lisa.model.sam import upscale_masks

# A 4x4 low-resolution logit map whose columns are 2, 0, -4, -4 (constant down each column),
# for a SAM input of 8 px and a portrait image shown at 8x4 inside it (padding on the right).
# Bilinear 4 -> 8 (align_corners=False) samples source column 0.5 j - 0.25, clamped at 0:
#   j = 0: 2;  j = 1: 0.75*2 + 0.25*0 = 1.5;  j = 2: 0.25*2 = 0.5;  j = 3: 0.25*(-4) = -1
# so after cropping to the 4 image columns: [2, 1.5, 0.5, -1]. Resizing 4 -> 2 samples
# source column 2 j + 0.5: j = 0: (2 + 1.5) / 2 = 1.75;  j = 1: (0.5 - 1) / 2 = -0.25.
PORTRAIT_LOW_RES = torch.tensor([[2.0, 0.0, -4.0, -4.0]] * 4)
PORTRAIT_EXPECTED = torch.tensor([[1.75, -0.25]] * 4)


def test_portrait_mask_crops_the_right_padding_before_resizing() -> None:
    out = upscale_masks(PORTRAIT_LOW_RES[None], 8, (8, 4), (4, 2))
    assert out.shape == (1, 4, 2) and out.dtype == torch.float32
    torch.testing.assert_close(out[0], PORTRAIT_EXPECTED, atol=1e-6, rtol=0)
    assert (out[0] > 0).tolist() == [[True, False]] * 4


def test_landscape_mask_crops_the_bottom_padding_before_resizing() -> None:
    out = upscale_masks(PORTRAIT_LOW_RES.T[None], 8, (4, 8), (2, 4))
    torch.testing.assert_close(out[0], PORTRAIT_EXPECTED.T, atol=1e-6, rtol=0)


def test_square_mask_is_a_plain_resize() -> None:
    low = torch.tensor([[[1.0, -1.0], [-1.0, 1.0]]])
    out = upscale_masks(low, 2, (2, 2), (2, 2))
    torch.testing.assert_close(out, low)


def test_half_precision_logits_come_back_float32() -> None:
    out = upscale_masks(PORTRAIT_LOW_RES[None].bfloat16(), 8, (8, 4), (4, 2))
    assert out.dtype == torch.float32
    torch.testing.assert_close(out[0], PORTRAIT_EXPECTED, atol=1e-6, rtol=0)


def test_sam_size_rounds_half_up_on_the_longest_side() -> None:
    assert sam_resized_size(1, 4, 10) == (3, 10)  # 2.5 -> 3 (Python's round() would give 2)
    assert sam_resized_size(5, 9, 256) == (142, 256)  # 5 * 256 / 9 = 142.2
    assert sam_resized_size(1500, 700, 1024) == (1024, 478)  # 700 * 1024 / 1500 = 477.9
    assert sam_resized_size(64, 64, 256) == (256, 256)


def test_sam_view_pads_bottom_and_right_with_zero_after_normalising() -> None:
    white = np.full((2, 4, 3), 255, np.uint8)  # landscape: 4 x 8 inside an 8 x 8 input
    view = sam_view(white, 8)
    assert view.resized_size == (4, 8) and view.original_size == (2, 4)
    expected = (255 - torch.tensor(SAM_PIXEL_MEAN)) / torch.tensor(SAM_PIXEL_STD)
    torch.testing.assert_close(view.pixels[:, :4, :], expected[:, None, None].expand(3, 4, 8))
    assert torch.all(view.pixels[:, 4:, :] == 0)
    tall = sam_view(np.full((4, 2, 3), 255, np.uint8), 8)  # portrait: padding on the right
    torch.testing.assert_close(tall.pixels[:, :, :4], expected[:, None, None].expand(3, 8, 4))
    assert torch.all(tall.pixels[:, :, 4:] == 0)


def test_sam_view_keeps_colour_channels_in_rgb_order() -> None:
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    pixels = sam_view(red, 4).pixels
    expected = (torch.tensor([255.0, 0, 0]) - torch.tensor(SAM_PIXEL_MEAN)) / torch.tensor(SAM_PIXEL_STD)
    torch.testing.assert_close(pixels[:, 0, 0], expected)
