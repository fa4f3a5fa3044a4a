"""Reasoning results split by what each query needs, from `lisa eval --dataset reasonseg` reports.

    python configs/tiny-shapes/probe_reasoning_families.py EVAL.json [EVAL.json ...]

Each query is matched to its concept (`lisa.data.shapes.facts`) by its wording: the concept's
family (shape, colour, use, part, sides), a fact-free rule, or no target at all. Per family it
prints the mean IoU, how many queries, and how often the generated answer states the concept's
fact word for word (a model trained with `explain_first` states it before the mask). On a test
split every concept is held out, so the fact column says how often the model recalled a fact it
has only read as text.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from lisa.data.shapes.facts import CONCEPTS, Concept

WORDINGS: dict[str, Concept] = {text.lower(): c for c in CONCEPTS for text in c.phrases + c.sentences}


def concept_of(query: str) -> Concept | None:
    lowered = query.lower()
    return next((c for text, c in WORDINGS.items() if text in lowered), None)


def families(report: dict) -> dict[str, tuple[float, int, int, int]]:
    """family -> (mean IoU, queries, answers stating the fact, queries that have a fact)."""
    ious: dict[str, list[float]] = defaultdict(list)
    stated: dict[str, list[bool]] = defaultdict(list)
    for sample in report["per_sample"]:
        concept = concept_of(sample["query"])
        if sample["target_area"] == 0:
            family = "no target"
        elif concept is None:
            family = "rule"
        else:
            family = concept.family
            stated[family].append(concept.reason in sample["answer"])
        ious[family].append(sample["iou"])
    return {f: (sum(v) / len(v), len(v), sum(stated[f]), len(stated[f])) for f, v in sorted(ious.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("reports", nargs="+", type=Path)
    args = parser.parse_args()
    for path in args.reports:
        report = json.loads(path.read_text())
        cells = []
        for family, (iou, n, with_fact, of) in families(report).items():
            fact = f", fact stated {with_fact}/{of}" if of else ""
            cells.append(f"{family} {iou:.2f} (n={n}{fact})")
        print(f"{path}: gIoU {report['giou']:.3f} cIoU {report['ciou']:.3f}")
        print("  " + " | ".join(cells))


if __name__ == "__main__":
    main()
