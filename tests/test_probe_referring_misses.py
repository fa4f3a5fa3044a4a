"""configs/tiny-shapes/probe_referring_misses.py: referring phrases sorted by the generator's own
description of them, and misses sorted by what the mask did."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from _recipe_scripts import RECIPE_DIR, load_recipe_script

from lisa.data.shapes.queries import RELATIONS, describe, referring_queries
from lisa.data.shapes.redraw import redraw_scene

SCRIPT = RECIPE_DIR / "probe_referring_misses.py"
TEMPLATE = "What is {} in this image? Please output segmentation mask."


def _probe():
    return load_recipe_script("probe_referring_misses")


def test_phrases_are_read_as_the_generator_built_them() -> None:
    probe = _probe()
    seen = set()
    rng = np.random.default_rng(0)
    for index in range(40):
        objects = redraw_scene("val", index)[0].objects
        targets = [(i, None) for i in range(len(objects))]
        targets += [(i, part.name) for i, o in enumerate(objects) if o.is_thing for part in o.parts]
        for i, part in targets:
            description = describe(rng, objects, i, part)
            if description is None:
                continue
            expected = "relation" if description.relation else "part" if description.part else "object"
            assert description.relation in (None, *RELATIONS)
            assert probe.phrase_kind(TEMPLATE.format(description.text())) == expected, description.text()
            seen.add(expected)
        for query in referring_queries(rng, redraw_scene("val", index)[0], 6):
            if query.concept == "group:colour":
                assert probe.phrase_kind(TEMPLATE.format(query.texts[0])) == "group", query.texts[0]
                seen.add("group")
    assert seen == {"object", "part", "relation", "group"}


def test_misses_are_sorted_by_what_the_mask_did() -> None:
    probe = _probe()
    assert probe.miss_kind(0.5, 100, 100) is None
    assert probe.miss_kind(0.0, 0, 100) == "empty"
    assert probe.miss_kind(0.01, 100, 100) == "elsewhere"
    assert probe.miss_kind(0.33, 300, 100) == "spill"  # the whole thing for a third of it
    assert probe.miss_kind(0.4, 40, 100) == "short"
    assert probe.miss_kind(0.4, 120, 100) == "partial"


def test_report_rows_from_an_eval_report(tmp_path: Path) -> None:
    samples = [
        {"query": TEMPLATE.format("the red circle"), "iou": 0.9, "predicted_area": 100, "target_area": 100},
        {"query": TEMPLATE.format("the red circle"), "iou": 0.0, "predicted_area": 0, "target_area": 100},
        {"query": TEMPLATE.format("the hull of the red boat"), "iou": 0.3, "predicted_area": 330, "target_area": 100},
        {"query": TEMPLATE.format("the hull of the red boat"), "iou": 0.7, "predicted_area": 100, "target_area": 100},
        {"query": TEMPLATE.format("the heart left of the blue star"), "iou": 0.02, "predicted_area": 90, "target_area": 100},
        {"query": TEMPLATE.format("all red shapes"), "iou": 0.6, "predicted_area": 100, "target_area": 120},
    ]
    summary = _probe().summarise(samples)
    assert summary["object"] == {"n": 2, "hit_rate": 0.5, "mean_iou": 0.45, "hit_iou": 0.9,
                                 "misses": {"empty": 1, "elsewhere": 0, "spill": 0, "short": 0, "partial": 0}}
    assert summary["part"]["misses"]["spill"] == 1 and summary["part"]["hit_iou"] == 0.7
    assert summary["relation"]["hit_rate"] == 0 and summary["relation"]["hit_iou"] is None
    assert summary["group"]["n"] == 1 and summary["all"]["n"] == 6
    assert abs(summary["all"]["hit_rate"] - 0.5) < 1e-12
    report = tmp_path / "referring.json"
    report.write_text(json.dumps({"giou": 0.42, "ciou": 0.4, "per_sample": samples}))
    out = subprocess.run([sys.executable, str(SCRIPT), str(report)], capture_output=True, text=True, check=True).stdout
    assert "gIoU 0.420 cIoU 0.400" in out and any(line.split()[:3] == ["relation", "1", "0.000"] for line in out.splitlines())
