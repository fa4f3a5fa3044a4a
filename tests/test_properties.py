"""Property-based tests (hypothesis): RLE round trips, polygon rasterisation within bounds, metric
invariants (order, splitting across processes and merging), and image normalisation over random
modes and sizes from 1x1 to 4096x1. Bounded: few examples, no deadline (the suite stays fast)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from pycocotools import mask as coco_mask

from lisa.data.image_io import load_image
from lisa.data.polygons import coco_polygons_mask, coco_rle_mask, reasonseg_mask
from lisa.data.transforms import SAM_PIXEL_MEAN, SAM_PIXEL_STD, sam_view, vlm_view
from lisa.data.validate import RecordError, check_rle, compressed_rle_counts
from lisa.eval.metrics import IoUAccumulator, score_mask
from lisa.inference.render import mask_record

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def masks(draw, max_side: int = 24) -> np.ndarray:
    height = draw(st.integers(1, max_side))
    width = draw(st.integers(1, max_side))
    kind = draw(st.sampled_from(["random", "empty", "full", "block"]))
    if kind == "empty":
        return np.zeros((height, width), bool)
    if kind == "full":
        return np.ones((height, width), bool)
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.random((height, width)) < draw(st.floats(0.05, 0.95))
    mask = np.zeros((height, width), bool)
    y0, x0 = rng.integers(0, height), rng.integers(0, width)
    mask[y0:rng.integers(y0, height) + 1, x0:rng.integers(x0, width) + 1] = True
    return mask


def _runs(mask: np.ndarray) -> list[int]:
    """Column-major run lengths starting with zeros: the COCO uncompressed RLE, computed independently."""
    flat = mask.T.reshape(-1).astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs


@FAST
@given(masks())
def test_rle_round_trips(mask: np.ndarray) -> None:
    height, width = mask.shape
    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    compressed = {"size": [height, width], "counts": encoded["counts"].decode()}
    assert compressed_rle_counts(compressed["counts"]) == _runs(mask)  # our decoder == the format's definition
    assert check_rle(compressed, height, width) == (height, width)
    assert np.array_equal(coco_rle_mask(compressed, height, width).astype(bool), mask)
    uncompressed = {"size": [height, width], "counts": _runs(mask)}
    assert np.array_equal(coco_rle_mask(uncompressed, height, width).astype(bool), mask)
    record = json.loads(json.dumps(mask_record(mask, 0.5)))  # what `lisa segment` writes to result.json
    assert np.array_equal(coco_rle_mask(record["rle"], height, width).astype(bool), mask)


@FAST
@given(masks(), st.integers(-3, 3).filter(lambda d: d != 0))
def test_rle_with_a_wrong_total_is_refused(mask: np.ndarray, delta: int) -> None:
    runs = _runs(mask)
    runs[-1] += delta
    if runs[-1] < 0:
        runs[-1] = 0
        if sum(runs) == mask.size:
            return
    with pytest.raises(RecordError):
        coco_rle_mask({"size": list(mask.shape), "counts": runs}, *mask.shape)


coordinates = st.floats(-1.0, 2.0, allow_nan=False)  # in units of the image side: within the accepted bound


@FAST
@given(st.integers(1, 40), st.integers(1, 40), st.lists(st.lists(st.tuples(coordinates, coordinates), min_size=3,
                                                                    max_size=8), min_size=1, max_size=3))
def test_polygons_rasterise_within_the_image_and_their_box(height: int, width: int, polygons) -> None:
    flat = [[v for x, y in poly for v in (x * width, y * height)] for poly in polygons]
    mask = coco_polygons_mask(flat, height, width)
    assert mask.shape == (height, width) and mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 1}
    ys, xs = np.nonzero(mask)
    if len(xs):  # every painted pixel lies within the polygons' bounding box (1 px of rounding)
        all_x = [v for p in flat for v in p[0::2]]
        all_y = [v for p in flat for v in p[1::2]]
        assert xs.min() >= np.floor(min(all_x)) - 1 and xs.max() <= np.ceil(max(all_x)) + 1
        assert ys.min() >= np.floor(min(all_y)) - 1 and ys.max() <= np.ceil(max(all_y)) + 1
    shapes = [{"label": "ignore" if k == 1 else "target", "points": [[x * width, y * height] for x, y in poly]}
              for k, poly in enumerate(polygons)]
    assert set(np.unique(reasonseg_mask(shapes, height, width))) <= {0, 1, 255}


hostile = st.one_of(st.just(float("nan")), st.just(float("inf")), st.just(-float("inf")),
                    st.floats(1e7, 1e300), st.floats(-1e300, -1e7))


@settings(max_examples=25, deadline=None)
@given(st.integers(1, 30), st.integers(1, 30), hostile, st.integers(0, 5))
def test_hostile_coordinates_never_reach_the_rasteriser(height: int, width: int, bad: float, position: int) -> None:
    polygon = [0.0, 0.0, 5.0, 0.0, 5.0, 5.0]
    polygon[position] = bad
    with pytest.raises(RecordError):
        coco_polygons_mask([polygon], height, width)
    with pytest.raises(RecordError):
        reasonseg_mask([{"label": "t", "points": [polygon[i:i + 2] for i in (0, 2, 4)]}], height, width)


@st.composite
def scored_pairs(draw) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = []
    for _ in range(draw(st.integers(1, 12))):
        pred = draw(masks(12))
        rng = np.random.default_rng(draw(st.integers(0, 2**31)))
        target = rng.choice(np.array([0, 1, 255], np.uint8), size=pred.shape, p=[0.5, 0.4, 0.1])
        pairs.append((pred, target))
    return pairs


def _accumulate(pairs) -> IoUAccumulator:
    acc = IoUAccumulator()
    for pred, target in pairs:
        acc.add(score_mask(pred, target))
    return acc


@FAST
@given(scored_pairs(), st.integers(0, 2**31), st.integers(1, 4))
def test_metrics_ignore_order_and_merge_exactly_across_processes(pairs, seed: int, n_procs: int) -> None:
    whole = _accumulate(pairs)
    shuffled = pairs[:]
    random.Random(seed).shuffle(shuffled)
    assert _accumulate(shuffled).summary() == whole.summary()
    shards = [shuffled[rank::n_procs] for rank in range(n_procs)]  # as a sharded eval splits the items
    states = [json.loads(json.dumps(_accumulate(shard).state_dict())) for shard in shards]  # gathered as JSON
    merged = IoUAccumulator()
    for state in states:
        merged = merged.merge(IoUAccumulator.from_state_dict(state))
    assert merged.state_dict() == whole.state_dict() and merged.summary() == whole.summary()
    assert 0.0 <= whole.giou <= 1.0 and 0.0 <= whole.ciou <= 1.0


MODES = ["RGB", "RGBA", "L", "LA", "P", "1", "I;16", "I", "F", "CMYK"]
sizes = st.one_of(st.tuples(st.integers(1, 6), st.integers(1, 6)),
                  st.sampled_from([(1, 4096), (4096, 1), (3, 4096), (4096, 3), (1, 2), (2, 1), (3, 3)]))


@pytest.fixture(scope="module")
def processors(tmp_path_factory):
    from transformers import CLIPImageProcessorPil

    from lisa.model.build import build_image_processor

    clip = CLIPImageProcessorPil(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16})  # CLIP's recipe
    return [build_image_processor(16), clip]  # lisa-tiny's (square resize) and CLIP's


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes, st.sampled_from(MODES), st.integers(0, 2**31))
def test_image_views_over_random_modes_and_sizes(processors, size, mode: str, seed: int) -> None:
    height, width = size
    rgb = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = Image.fromarray(rgb).convert(mode)
    array = load_image(image)
    assert array.shape == (height, width, 3) and array.dtype == np.uint8
    for processor in processors:  # a PIL image has no layout to guess: the reference
        expected = processor(images=[Image.fromarray(array)], return_tensors="pt")["pixel_values"]
        assert np.array_equal(vlm_view([array], processor).numpy(), expected.numpy()), (size, mode)
    view = sam_view(array, 32)
    new_h, new_w = view.resized_size
    assert max(new_h, new_w) == 32 and min(new_h, new_w) >= 1 and view.pixels.shape == (3, 32, 32)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes, st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)))
def test_a_constant_image_gives_constant_views(processors, size, colour) -> None:
    """Known-correct output: every pixel of any view of a one-colour image is that colour, normalised."""
    array = np.empty((*size, 3), np.uint8)
    array[:] = colour
    for processor in processors:
        pixels = vlm_view([array], processor)[0].numpy()  # [3, h, w]
        rescaled = np.array(colour, np.float32) * np.float32(processor.rescale_factor)
        expected = (rescaled - np.array(processor.image_mean, np.float32)) / np.array(processor.image_std, np.float32)
        assert np.allclose(pixels, expected[:, None, None], atol=1e-5), (size, colour)
    view = sam_view(array, 32)
    new_h, new_w = view.resized_size
    expected = (np.array(colour, np.float32) - np.array(SAM_PIXEL_MEAN, np.float32)) / np.array(SAM_PIXEL_STD, np.float32)
    assert np.allclose(view.pixels[:, :new_h, :new_w].numpy(), expected[:, None, None], atol=1e-5)
    assert not view.pixels[:, new_h:, :].any() and not view.pixels[:, :, new_w:].any()
