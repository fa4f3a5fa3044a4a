"""Shapes world rendering: masks match the drawn pixels, occlusion, polygons rasterise exactly."""

from __future__ import annotations

import numpy as np
import pytest

from lisa.data.polygons import reasonseg_mask
from lisa.data.shapes.objects import COLOURS, make_shape, make_thing
from lisa.data.shapes.scene import (MIN_OBJECT_VISIBLE, Scene, render, sample_scene)
from lisa.data.shapes.writer import rasterize_reason_seg, reason_seg_shapes

SIZE = 128
BG = np.full((SIZE, SIZE, 3), 240, dtype=np.uint8)  # plain, pale: no object colour


def _hand_scene() -> Scene:
    objects = [
        make_shape("square", "blue", "large", "solid", 40, 40, 25),
        make_shape("circle", "red", "medium", "solid", 60, 55, 14),  # overlaps the square
        make_shape("star", "green", "small", "solid", 100, 100, 12),
        make_thing("car", "yellow", "large", 95, 35, 22),
    ]
    return render(objects, SIZE, BG)


def test_each_mask_is_exactly_the_pixels_of_its_colour() -> None:
    scene = _hand_scene()
    for i, obj in enumerate(scene.objects[:3]):  # solid shapes with colours unique in the scene
        painted = np.all(scene.image == COLOURS[obj.colour], axis=-1)
        assert np.array_equal(scene.object_mask(i), painted), obj.kind
    # Pixels not owned by any object keep the background.
    owned = scene.part_ids > 0
    assert np.all(scene.image[~owned] == 240)
    assert not np.any(np.all(scene.image[owned] == 240, axis=-1))


def test_occluded_object_loses_exactly_the_covered_pixels() -> None:
    scene = _hand_scene()
    alone = render(scene.objects[:1], SIZE, BG)
    front = render(scene.objects[1:2], SIZE, BG)
    expected = alone.object_mask(0) & ~front.object_mask(0)
    assert front.object_mask(0).sum() > 0 and (alone.object_mask(0) & front.object_mask(0)).any()
    assert np.array_equal(scene.object_mask(0), expected)


def test_part_masks_tile_the_thing_and_use_their_colours() -> None:
    scene = _hand_scene()
    car = scene.objects[3]
    union = np.zeros((SIZE, SIZE), dtype=bool)
    for part in car.parts:
        mask = scene.part_mask(3, part.name)
        assert mask.sum() > 0, part.name
        assert not (union & mask).any(), "parts overlap"
        assert np.all(scene.image[mask] == COLOURS[part.colour]), part.name
        union |= mask
    assert np.array_equal(union, scene.object_mask(3))
    assert scene.object_mask(3).sum() > scene.part_mask(3, "wheels").sum() > 0


@pytest.mark.parametrize("seed", range(6))
def test_sampled_scenes_keep_objects_visible_and_masks_disjoint(seed: int) -> None:
    scene = sample_scene(np.random.default_rng(seed), 256)
    assert 1 <= len(scene.objects) <= 8
    union = np.zeros((256, 256), dtype=int)
    for i, obj in enumerate(scene.objects):
        visible = scene.object_mask(i)
        full = render([obj], 256, scene.image).object_mask(0)
        assert visible.sum() >= MIN_OBJECT_VISIBLE * full.sum()
        ys, xs = np.nonzero(visible)
        assert xs.max() - xs.min() >= 20 or ys.max() - ys.min() >= 20, obj.kind  # learnable size
        union += visible
    assert union.max() <= 1  # every pixel belongs to at most one object


def test_polygons_rasterise_back_to_the_exact_mask() -> None:
    rng = np.random.default_rng(7)
    checked = 0
    for _ in range(12):
        scene = sample_scene(rng, 256)
        for i in range(len(scene.objects)):
            mask = scene.object_mask(i)
            shapes = reason_seg_shapes(mask)
            if shapes is None:  # only masks with holes may fail
                assert _has_hole(mask)
                continue
            assert np.array_equal(rasterize_reason_seg(shapes, 256, 256), mask.astype(np.uint8))
            checked += 1
    assert checked > 30


def test_the_project_loader_rasterises_our_polygons_the_same_way() -> None:
    scene = _hand_scene()
    for i in range(len(scene.objects)):
        shapes = reason_seg_shapes(scene.object_mask(i))
        assert shapes is not None
        assert np.array_equal(reasonseg_mask(shapes, SIZE, SIZE),
                              scene.object_mask(i).astype(np.uint8))


def test_mask_with_a_hole_is_refused() -> None:
    ring = render([make_shape("square", "blue", "large", "solid", 64, 64, 40),
                   make_shape("circle", "red", "small", "solid", 64, 64, 10)], SIZE, BG)
    assert _has_hole(ring.object_mask(0))
    assert reason_seg_shapes(ring.object_mask(0)) is None


def _has_hole(mask: np.ndarray) -> bool:
    import cv2

    _, hierarchy = cv2.findContours(mask.astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return hierarchy is not None and bool((hierarchy[0][:, 3] >= 0).any())
