"""Where referring segmentation misses: per kind of phrase, how often the mask hits (IoU >= 0.5)
and how good the hits are, and what the misses look like.

    python configs/tiny-shapes/probe_referring_misses.py EVAL.json [EVAL.json ...]

EVAL.json: a `lisa eval --dataset jsonl --names referring` report on a shapes world. Phrases are
read with the generator's grammar (`lisa.data.shapes.queries.Description.text`): a relation
("the heart left of the small striped star"; counted as a relation even when it asks for a
part), a part ("the hull of the boat"), a colour group ("all red shapes") or a plain object
("the small green hexagon"). A miss is empty (no mask), elsewhere (IoU < 0.05: another object),
spill (more than twice the target's area: a whole thing for its part, or neighbours too), short
(under half of it) or partial (the rest).
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

from lisa.data.shapes.objects import ALL_PART_NAMES
from lisa.data.shapes.queries import RELATIONS

PHRASE_KINDS = ("object", "part", "relation", "group")
MISS_KINDS = ("empty", "elsewhere", "spill", "short", "partial")
HIT = 0.5
GROUP = re.compile(r"\b(all \w+ shapes|every \w+ shape|the \w+ shapes)\b")


def phrase_kind(query: str) -> str:
    """The kind of a referring phrase, alone or inside a prompt template."""
    if any(f" {relation} the " in query for relation in RELATIONS):
        return "relation"
    if any(f"the {part} of the " in query for part in ALL_PART_NAMES):
        return "part"
    return "group" if GROUP.search(query) else "object"


def miss_kind(iou: float, predicted_area: int, target_area: int) -> str | None:
    """None for a hit (IoU >= 0.5), otherwise what kind of miss."""
    if iou >= HIT:
        return None
    if predicted_area == 0:
        return "empty"
    if iou < 0.05:
        return "elsewhere"
    if predicted_area > 2 * target_area:
        return "spill"
    return "short" if predicted_area < target_area / 2 else "partial"


def summarise(samples: list[dict]) -> dict[str, dict]:
    """Per phrase kind (and "all"): n, hit rate, mean IoU, mean IoU of the hits, misses by kind."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for sample in samples:
        groups[phrase_kind(sample["query"])].append(sample)
        groups["all"].append(sample)
    summary = {}
    for name in (*PHRASE_KINDS, "all"):
        group = groups.get(name, [])
        if not group:
            continue
        hits = [s["iou"] for s in group if s["iou"] >= HIT]
        misses = Counter(miss_kind(s["iou"], s["predicted_area"], s["target_area"]) for s in group)
        summary[name] = {"n": len(group), "hit_rate": len(hits) / len(group),
                         "mean_iou": sum(s["iou"] for s in group) / len(group),
                         "hit_iou": sum(hits) / len(hits) if hits else None,
                         "misses": {kind: misses[kind] for kind in MISS_KINDS}}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("reports", nargs="+", type=Path)
    args = parser.parse_args()
    for path in args.reports:
        report = json.loads(path.read_text())
        print(f"{path}: gIoU {report['giou']:.3f} cIoU {report['ciou']:.3f}")
        print(f"  {'phrase':9} {'n':>4} {'hit':>6} {'mIoU':>6} {'hit IoU':>8}   misses: " + " ".join(MISS_KINDS))
        for name, row in summarise(report["per_sample"]).items():
            hit_iou = f"{row['hit_iou']:8.3f}" if row["hit_iou"] is not None else f"{'-':>8}"
            misses = " ".join(f"{row['misses'][kind]:>{len(kind)}d}" for kind in MISS_KINDS)
            print(f"  {name:9} {row['n']:4d} {row['hit_rate']:6.3f} {row['mean_iou']:6.3f} {hit_iou}           {misses}")


if __name__ == "__main__":
    main()
