"""gIoU / cIoU conventions of the official validation, checked by hand."""

from __future__ import annotations

import random

import numpy as np
import pytest

from lisa.eval.metrics import CIOU_EPS, IOU_EPS, IoUAccumulator, MaskScore, score_mask
from lisa.eval.report import ItemScore, Results, build_report, summary_line


def test_ignore_pixels_are_removed_from_prediction_and_target() -> None:
    target = np.array([[1, 1, 0, 255]], dtype=np.uint8)
    pred = np.array([[1, 0, 1, 1]], dtype=bool)  # the last pixel is predicted but ignored
    score = score_mask(pred, target)
    assert (score.intersection, score.union) == (1, 3)
    assert score.iou == pytest.approx(1 / (3 + IOU_EPS), abs=0)


def test_empty_prediction_on_empty_target_scores_one() -> None:
    target = np.zeros((4, 4), dtype=np.uint8)
    target[0, 0] = 255
    pred = np.zeros((4, 4), dtype=bool)
    pred[0, 0] = True  # only on an ignore pixel: still empty after ignoring
    assert score_mask(pred, target) == MaskScore(0, 0)
    assert score_mask(pred, target).iou == 1.0


def test_false_positive_on_empty_target_scores_zero() -> None:
    target = np.zeros((2, 2), dtype=np.uint8)
    pred = np.ones((2, 2), dtype=bool)
    assert score_mask(pred, target).iou == 0.0


def test_giou_is_mean_iou_and_ciou_is_ratio_of_sums() -> None:
    acc = IoUAccumulator()
    acc.add(MaskScore(1, 2))  # IoU ~0.5
    acc.add(MaskScore(0, 0))  # empty on empty: 1
    acc.add(MaskScore(90, 100))  # 0.9
    ious = [1 / (2 + IOU_EPS), 1.0, 90 / (100 + IOU_EPS)]
    assert acc.giou == pytest.approx(sum(ious) / (3 + IOU_EPS), rel=1e-15)
    assert acc.ciou == pytest.approx(91 / (102 + CIOU_EPS), rel=1e-15)


def test_shape_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="shape"):
        score_mask(np.zeros((2, 3), bool), np.zeros((3, 2), np.uint8))


def _random_scores(n: int, seed: int) -> list[MaskScore]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        union = rng.randrange(0, 10_000)
        out.append(MaskScore(rng.randrange(0, union + 1), union))
    return out


def test_merging_split_accumulators_equals_one_pass_bit_for_bit() -> None:
    scores = _random_scores(500, 0)
    whole = IoUAccumulator()
    for s in scores:
        whole.add(s)
    parts = [IoUAccumulator() for _ in range(7)]
    shuffled = scores[:]
    random.Random(1).shuffle(shuffled)
    for k, s in enumerate(shuffled):
        parts[k % 7].add(s)
    merged = IoUAccumulator()
    for part in parts:  # also through the JSON state, as processes would exchange it
        merged = merged.merge(IoUAccumulator.from_state_dict(part.state_dict()))
    assert merged.giou == whole.giou and merged.ciou == whole.ciou and merged.n == whole.n


def test_report_has_subsets_worst_and_summary_line() -> None:
    results = Results()
    for k in range(30):
        results.add(ItemScore(f"item{k:02d}", MaskScore(k, 30).iou, k, 30, is_sentence=k % 3 == 0))
    report = build_report(results, k_worst=20)
    assert report["n"] == 30
    assert report["subsets"]["long"]["n"] == 10 and report["subsets"]["short"]["n"] == 20
    assert [w["item_id"] for w in report["worst"]][:2] == ["item00", "item01"] and len(report["worst"]) == 20
    assert len(report["per_sample"]) == 30
    assert summary_line(report) == f"gIoU={report['giou']:.4f} cIoU={report['ciou']:.4f} n=30"
    merged = Results()
    for k in range(0, 30, 10):
        part = Results()
        for item in results.items[k:k + 10]:
            part.add(item)
        merged = merged.merge(part)
    assert build_report(merged)["giou"] == report["giou"]
    assert build_report(merged)["subsets"] == report["subsets"]


def test_no_target_summary_counts_empty_answers() -> None:
    from lisa.eval.report import ItemScore, no_target_summary

    items = [
        ItemScore("a", 1.0, 0, 0, False, target_area=0, predicted_area=0),  # right: nothing there, nothing given
        ItemScore("b", 0.0, 0, 9, False, target_area=0, predicted_area=9),  # wrong: a mask for nothing
        ItemScore("c", 0.0, 0, 4, False, target_area=4, predicted_area=0),  # a target missed
        ItemScore("d", 0.5, 2, 4, False, target_area=3, predicted_area=3),
    ]
    assert no_target_summary(items) == {"n": 2, "accuracy": 0.5, "missed_targets": 0.5}
