"""configs/tiny-shapes/paired_difference.py: a candidate's gIoU change on the same queries and its
paired standard error, checked on values worked out by hand."""

from __future__ import annotations

import json
import math

import pytest
from _recipe_scripts import load_recipe_script


def _report(path, ious: dict[str, float]):
    path.write_text(json.dumps({"per_sample": [{"item_id": k, "iou": v} for k, v in ious.items()]}))
    return path


def test_difference_and_paired_standard_error(tmp_path) -> None:
    script = load_recipe_script("paired_difference")
    reference = script.per_query_iou(_report(tmp_path / "a.json", {"q1": 0.5, "q2": 0.2, "q3": 0.9, "q4": 0.0}))
    candidate = script.per_query_iou(_report(tmp_path / "b.json", {"q4": 0.1, "q3": 0.9, "q2": 0.4, "q1": 0.3}))
    result = script.paired_difference(reference, candidate)
    # differences by id: -0.2, +0.2, 0.0, +0.1 -> mean 0.025; sample sd sqrt(0.0875 / 3)
    assert result["n"] == 4 and result["difference"] == pytest.approx(0.025)
    assert result["reference_giou"] == pytest.approx(0.4) and result["candidate_giou"] == pytest.approx(0.425)
    assert result["paired_se"] == pytest.approx(round(math.sqrt(0.0875 / 3) / 2, 4))


def test_reports_of_different_queries_are_refused(tmp_path) -> None:
    script = load_recipe_script("paired_difference")
    reference = script.per_query_iou(_report(tmp_path / "a.json", {"q1": 0.5, "q2": 0.2}))
    candidate = script.per_query_iou(_report(tmp_path / "b.json", {"q1": 0.5, "q3": 0.2}))
    with pytest.raises(SystemExit, match="different queries"):
        script.paired_difference(reference, candidate)
