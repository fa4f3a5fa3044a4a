"""gIoU / cIoU exactly as the official validation (``train_ds.py:validate`` and ``utils/utils.py:intersectionAndUnionGPU`` of the official code), accumulated as mergeable sums.

Per mask (prediction and target [H, W]; target 255 = ignore):

* the prediction is set to ignore where the target is 255, then
  I = #(pred == 1 and target == 1), U = #(pred == 1) + #(target == 1) - I   (foreground class);
* IoU = I / (U + 1e-5), or 1.0 when U == 0 (empty prediction on empty target).

Over a dataset: gIoU = sum(IoU) / (n + 1e-5) and cIoU = sum(I) / (sum(U) + 1e-10), with the
official epsilons. Target values other than 0, 1 and 255 count as neither class, as with the
official 2-bin histogram.

Sums are exact (integers for I and U, a ``Fraction`` for the IoU sum), so merging accumulators
built on any split of the data gives bit-identical results to one pass. Per-mask IoU is
computed in float64 (the official code uses float32 on the GPU: differences are ~1e-7).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

IGNORE = 255
IOU_EPS = 1e-5  # per-mask IoU denominator, and the gIoU average's denominator
CIOU_EPS = 1e-10  # cIoU denominator


@dataclass(frozen=True)
class MaskScore:
    """Foreground intersection and union of one mask, and its IoU (official convention)."""

    intersection: int
    union: int

    @property
    def iou(self) -> float:
        if self.union == 0:
            return 1.0
        return self.intersection / (self.union + IOU_EPS)


def score_mask(pred: np.ndarray, target: np.ndarray) -> MaskScore:
    """Score one predicted mask against one target.

    pred: [H, W] bool or integer (nonzero = foreground); target: [H, W] uint8 in {0, 1, 255}.
    """
    if pred.shape != target.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from target shape {target.shape}")
    valid = target != IGNORE
    pred_fg = (pred != 0) & valid
    target_fg = target == 1
    intersection = int(np.count_nonzero(pred_fg & target_fg))
    union = int(np.count_nonzero(pred_fg)) + int(np.count_nonzero(target_fg)) - intersection
    return MaskScore(intersection, union)


@dataclass
class IoUAccumulator:
    """Exact running sums; ``a.merge(b)`` equals one pass over a's and b's data."""

    intersection: int = 0
    union: int = 0
    iou_sum: Fraction = field(default_factory=Fraction)
    n: int = 0

    def add(self, score: MaskScore) -> None:
        self.intersection += score.intersection
        self.union += score.union
        self.iou_sum += Fraction(score.iou)
        self.n += 1

    def merge(self, other: "IoUAccumulator") -> "IoUAccumulator":
        """A new accumulator holding both sets of sums."""
        return IoUAccumulator(
            self.intersection + other.intersection,
            self.union + other.union,
            self.iou_sum + other.iou_sum,
            self.n + other.n,
        )

    @property
    def giou(self) -> float:
        return float(self.iou_sum) / (self.n + IOU_EPS)

    @property
    def ciou(self) -> float:
        return self.intersection / (self.union + CIOU_EPS)

    def state_dict(self) -> dict[str, Any]:
        """JSON-safe exact state (for gathering across processes)."""
        return {
            "intersection": self.intersection,
            "union": self.union,
            "iou_sum": f"{self.iou_sum.numerator}/{self.iou_sum.denominator}",
            "n": self.n,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> "IoUAccumulator":
        return cls(int(state["intersection"]), int(state["union"]), Fraction(state["iou_sum"]), int(state["n"]))

    def summary(self) -> dict[str, float | int]:
        return {"giou": self.giou, "ciou": self.ciou, "n": self.n}
