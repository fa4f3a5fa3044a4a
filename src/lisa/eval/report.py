"""Collect per-item scores into the report JSON (overall, short / long subsets, worst items)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lisa.eval.metrics import IoUAccumulator, MaskScore


@dataclass(frozen=True)
class ItemScore:
    """The score of one evaluation item."""

    item_id: str
    iou: float
    intersection: int
    union: int
    is_sentence: bool
    image: str = ""
    query: str = ""
    answer: str | None = None  # generated text (model mode)
    target_area: int = -1  # target pixels (ignore excluded); 0 = a no-target query
    predicted_area: int = -1


@dataclass
class Results:
    """Accumulators (overall, short, long) plus the per-item scores; mergeable across shards."""

    overall: IoUAccumulator = field(default_factory=IoUAccumulator)
    short: IoUAccumulator = field(default_factory=IoUAccumulator)
    long: IoUAccumulator = field(default_factory=IoUAccumulator)
    items: list[ItemScore] = field(default_factory=list)

    def add(self, item: ItemScore) -> None:
        score = MaskScore(item.intersection, item.union)
        self.overall.add(score)
        (self.long if item.is_sentence else self.short).add(score)
        self.items.append(item)

    def merge(self, other: "Results") -> "Results":
        return Results(self.overall.merge(other.overall), self.short.merge(other.short),
                       self.long.merge(other.long), self.items + other.items)


def worst(items: list[ItemScore], k: int = 20) -> list[ItemScore]:
    """The ``k`` lowest-IoU items (ties broken by id, so the order is stable)."""
    return sorted(items, key=lambda s: (s.iou, s.item_id))[:k]


def no_target_summary(items: list[ItemScore]) -> dict[str, Any]:
    """No-target queries (empty target): the share answered with an empty mask (gRefCOCO's N-acc),
    and, on queries with a target, the share wrongly answered with none."""
    empty = [s for s in items if s.target_area == 0]
    present = [s for s in items if s.target_area > 0]
    return {
        "n": len(empty),
        "accuracy": sum(s.predicted_area == 0 for s in empty) / len(empty) if empty else None,
        "missed_targets": sum(s.predicted_area == 0 for s in present) / len(present) if present else None,
    }


def build_report(results: Results, info: dict[str, Any] | None = None, k_worst: int = 20) -> dict[str, Any]:
    """The report dict: giou, ciou, n, subsets {short, long}, no_target, per_sample, worst, ``info``."""
    return {
        **results.overall.summary(),
        "subsets": {"short": results.short.summary(), "long": results.long.summary()},
        "no_target": no_target_summary(results.items),
        "per_sample": [asdict(s) for s in results.items],
        "worst": [asdict(s) for s in worst(results.items, k_worst)],
        "sums": results.overall.state_dict(),
        **({"info": info} if info else {}),
    }


def summary_line(report: dict[str, Any]) -> str:
    """``gIoU=0.xxxx cIoU=0.xxxx n=N``."""
    return f"gIoU={report['giou']:.4f} cIoU={report['ciou']:.4f} n={report['n']}"


def write_report(report: dict[str, Any], path: Path) -> None:
    """Write the report as indented JSON (atomically: a reader never sees half a report), creating the folder."""
    from lisa.output_dir import write_text_atomic

    write_text_atomic(Path(path), json.dumps(report, indent=2) + "\n")
