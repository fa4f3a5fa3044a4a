"""gIoU of a candidate against a reference on the same queries, with the paired standard error:

    python configs/tiny-shapes/paired_difference.py REFERENCE.json CANDIDATE.json

Both are `lisa eval --out` reports of the same dataset and split. The paired standard error is
the standard deviation of the per-query IoU differences over the square root of the number of
queries: the noise of the difference when both models answer the same queries, far smaller
than either score's own spread over queries. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def per_query_iou(report: Path) -> dict[str, float]:
    return {item["item_id"]: float(item["iou"]) for item in json.loads(report.read_text())["per_sample"]}


def paired_difference(reference: dict[str, float], candidate: dict[str, float]) -> dict[str, float]:
    if reference.keys() != candidate.keys():
        missing = len(reference.keys() ^ candidate.keys())
        raise SystemExit(f"the reports score different queries ({missing} not in both): same dataset, split and limit?")
    keys = sorted(reference)
    differences = np.array([candidate[k] - reference[k] for k in keys])
    return {"n": len(keys), "reference_giou": round(float(np.mean([reference[k] for k in keys])), 4),
            "candidate_giou": round(float(np.mean([candidate[k] for k in keys])), 4),
            "difference": round(float(differences.mean()), 4),
            "paired_se": round(float(differences.std(ddof=1) / np.sqrt(len(keys))), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reference", type=Path)
    parser.add_argument("candidate", type=Path)
    args = parser.parse_args()
    print(json.dumps(paired_difference(per_query_iou(args.reference), per_query_iou(args.candidate))))


if __name__ == "__main__":
    main()
