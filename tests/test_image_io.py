"""Every kind of user image becomes upright RGB uint8; bad files give clear errors."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from lisa.data.image_io import load_image
from lisa.errors import LisaError


def test_rgba_is_composited_on_white(tmp_path) -> None:
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, :2, 3] = 255  # left opaque red, right fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    assert image.shape == (4, 5, 3) and image.dtype == np.uint8
    assert image[0, 0].tolist() == [200, 0, 0]
    assert image[0, 4].tolist() == [255, 255, 255]


def test_grayscale_becomes_three_channels(tmp_path) -> None:
    Image.fromarray(np.full((3, 3), 77, np.uint8), "L").save(tmp_path / "g.png")
    assert load_image(tmp_path / "g.png")[1, 1].tolist() == [77, 77, 77]


def test_sixteen_bit_png_keeps_its_range(tmp_path) -> None:
    data = np.array([[0, 65535], [32768, 257]], np.uint16)
    Image.fromarray(data).save(tmp_path / "d.png")
    image = load_image(tmp_path / "d.png")
    assert image[..., 0].tolist() == [[0, 255], [128, 1]]


def test_sixteen_bit_array_with_small_values_is_not_stretched() -> None:
    assert load_image(np.array([[255, 0]], np.uint16))[0, 0, 0] == 1


def test_exif_rotation_is_applied(tmp_path) -> None:
    pixels = np.zeros((2, 6, 3), np.uint8)  # stored landscape
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    image.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").shape == (6, 2, 3)


def test_palette_and_pil_and_float_inputs() -> None:
    palette = Image.fromarray(np.full((2, 2, 3), 10, np.uint8)).convert("P")
    assert load_image(palette).shape == (2, 2, 3)
    assert load_image(np.full((2, 2, 3), 0.5, np.float32))[0, 0, 0] == 128
    assert load_image(np.zeros((2, 2, 1), np.uint8)).shape == (2, 2, 3)


def test_corrupt_file_is_a_clear_error(tmp_path) -> None:
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(LisaError, match="cannot read image"):
        load_image(tmp_path / "bad.jpg")


def test_missing_file_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(LisaError, match="image not found"):
        load_image(tmp_path / "none.png")


def test_huge_image_is_refused_before_decoding(tmp_path) -> None:
    Image.new("L", (3000, 2000)).save(tmp_path / "big.png")
    with pytest.raises(LisaError, match="above the limit"):
        load_image(tmp_path / "big.png", max_pixels=1_000_000)


def test_bad_array_shape_and_nan_are_clear_errors() -> None:
    with pytest.raises(LisaError, match="expected an image array"):
        load_image(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(LisaError, match="NaN"):
        load_image(np.full((2, 2), np.nan, np.float32))
