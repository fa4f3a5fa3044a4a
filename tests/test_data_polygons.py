"""ReasonSeg rasterisation (labelme polygons as the official code fills them) and COCO polygon / RLE decoding."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as coco_mask

from lisa.data.polygons import coco_polygons_mask, coco_rle_mask, reasonseg_mask, segmentation_mask


def _shape(label: str, points: list[list[float]]) -> dict:
    return {"label": label, "points": points}


def test_outline_is_included_and_coordinates_are_truncated() -> None:
    mask = reasonseg_mask([_shape("target", [[1.9, 1.2], [4.7, 1.0], [4.99, 4.5], [1.0, 4.0]])], 8, 8)
    expected = np.zeros((8, 8), np.uint8)
    expected[1:5, 1:5] = 1  # corners truncated to 1 and 4; the closed 1-px outline is inside
    np.testing.assert_array_equal(mask, expected)


def test_larger_polygons_are_painted_first_whatever_the_file_order() -> None:
    small_target = _shape("target", [[3, 3], [5, 3], [5, 5], [3, 5]])
    big_ignore = _shape("ignore", [[0, 0], [9, 0], [9, 9], [0, 9]])
    mask = reasonseg_mask([small_target, big_ignore], 10, 10)
    assert mask[4, 4] == 1 and mask[0, 0] == 255 and mask[9, 9] == 255
    small_ignore = _shape("Ignore region", [[3, 3], [5, 3], [5, 5], [3, 5]])
    big_target = _shape("target", [[0, 0], [9, 0], [9, 9], [0, 9]])
    mask = reasonseg_mask([small_ignore, big_target], 10, 10)
    assert mask[4, 4] == 255 and mask[0, 0] == 1


def test_flag_shapes_are_skipped_and_values_are_0_1_255() -> None:
    flag = _shape("FLAG", [[0, 0], [9, 0], [9, 9], [0, 9]])
    target = _shape("target", [[0, 0], [2, 0], [2, 2], [0, 2]])
    mask = reasonseg_mask([flag, target], 10, 10)
    assert set(np.unique(mask)) == {0, 1} and mask.sum() == 9


def test_polygon_outside_the_image_is_clipped() -> None:
    mask = reasonseg_mask([_shape("target", [[-5, -5], [3, -5], [3, 3], [-5, 3]])], 6, 6)
    assert mask[:4, :4].all() and mask.sum() == 16


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under NumPy 2
def test_coco_polygons_are_unioned_not_summed() -> None:
    polys = [[0, 0, 6, 0, 6, 6, 0, 6], [3, 3, 9, 3, 9, 9, 3, 9]]
    mask = coco_polygons_mask(polys, 12, 12)
    assert mask.max() == 1 and mask.dtype == np.uint8
    single = coco_mask.decode(coco_mask.frPyObjects([polys[0]], 12, 12))[..., 0]
    assert (mask >= single).all()


def test_rle_compressed_string_and_uncompressed_list() -> None:
    m = np.zeros((7, 5), np.uint8, order="F")
    m[2:5, 1:3] = 1
    rle = coco_mask.encode(np.asfortranarray(m))
    np.testing.assert_array_equal(coco_rle_mask({"size": [7, 5], "counts": rle["counts"].decode()}), m)
    flat = m.flatten(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value != current:
            counts.append(run)
            current, run = value, 0
        run += 1
    counts.append(run)
    np.testing.assert_array_equal(coco_rle_mask({"size": [7, 5], "counts": counts}), m)
    assert segmentation_mask([], 3, 4).shape == (3, 4)
