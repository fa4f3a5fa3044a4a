"""configs/tiny-shapes/probe_mask_existence.py: the AUC and the decline target's operating point
(absent queries declined while at most 5 % of present ones are), on values worked out by hand."""

from __future__ import annotations

import numpy as np
from _recipe_scripts import load_recipe_script


def _probe():
    return load_recipe_script("probe_mask_existence")


def test_auc_counts_pairs_and_half_ties() -> None:
    probe = _probe()
    # present 3 > absent 1 and 2; present 2 > absent 1, ties with absent 2: (3 + 0.5) / 4
    assert probe.auc(np.array([3.0, 2.0]), np.array([1.0, 2.0])) == 0.875
    assert probe.auc(np.array([1.0]), np.array([2.0])) == 0.0


def test_absent_declined_at_five_percent_of_present() -> None:
    probe = _probe()
    present = np.arange(100, dtype=float)  # 0..99: 5 % of them may be declined, so values 0-4
    # below 5 is declined: 2 of the 4 absent values
    assert probe.absent_declined(present, np.array([-1.0, 4.5, 5.0, 50.0])) == 0.5
    # 30 present values: 5 % is 1.5, so one may be declined and the threshold is the second smallest
    assert probe.absent_declined(np.arange(30, dtype=float), np.array([0.0, 0.5, 1.0, 3.0])) == 0.5


def test_absent_declined_never_declines_more_present_than_allowed_with_ties() -> None:
    probe = _probe()
    present = np.array([1.0] * 10 + [2.0] * 10)  # any threshold above 1 declines half of them
    assert probe.absent_declined(present, np.array([0.0, 1.0, 1.5])) == 1 / 3  # only below 1


def test_absent_declined_by_group_uses_one_threshold_for_every_group() -> None:
    probe = _probe()
    present = np.arange(20, dtype=float)  # one may be declined: the threshold is 1
    absent = np.array([0.0, 0.5, 5.0, 0.9, 3.0])
    groups = np.array(["neither", "neither", "neither", "kind here", "kind here"])
    assert probe.absent_declined_by_group(present, absent, groups) == {"kind here": 0.5, "neither": round(2 / 3, 3)}
