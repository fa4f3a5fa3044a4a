"""Does the mask path see whether a described shape is there? Teacher-forces the answer "[SEG]."
for every absent.jsonl and present.jsonl query of a split (the same bare phrasing, "the red
heart", for a shape that is not there and one that is) and compares the forced masks:

    python configs/tiny-shapes/probe_mask_existence.py --model M --data-dir data/shapes --split val

Prints, as one JSON line, the median mask area of each side, how often the mask is empty, and
the AUC with which the mask's area and its mean foreground probability (the pipeline's score)
tell present from absent (0.5: no signal; 1.0: a threshold separates them).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from lisa import LisaPipeline
from lisa.data.jsonl import read_records
from lisa.data.templates import eval_query

FORCED = "[SEG]."


def forced_masks(pipe: LisaPipeline, data_dir: Path, split: str, family: str, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(area, score) of the forced mask of every query of ``family``."""
    records = read_records(data_dir, split, [family])
    areas, scores = [], []
    for start in range(0, len(records), batch):
        chunk = records[start:start + batch]
        results = pipe([str(r.image) for r in chunk], [eval_query(r.query, r.is_sentence) for r in chunk],
                       answers=[FORCED] * len(chunk), raw=True)
        for result in results:
            areas.append(float(result.masks.sum()) if result.masks.size else 0.0)
            scores.append(float(result.scores[0]) if result.scores.size else 0.0)
    return np.array(areas), np.array(scores)


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a present query's value > an absent one's), ties counted half."""
    greater = (positive[:, None] > negative[None]).mean()
    ties = (positive[:, None] == negative[None]).mean()
    return float(greater + 0.5 * ties)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("data/shapes"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    pipe = LisaPipeline.from_pretrained(args.model, device="cpu", dtype="float32")
    present_area, present_score = forced_masks(pipe, args.data_dir, args.split, "present", args.batch_size)
    absent_area, absent_score = forced_masks(pipe, args.data_dir, args.split, "absent", args.batch_size)
    print(json.dumps({
        "model": args.model, "present": len(present_area), "absent": len(absent_area),
        "median_area": {"present": float(np.median(present_area)), "absent": float(np.median(absent_area))},
        "empty": {"present": float((present_area == 0).mean()), "absent": float((absent_area == 0).mean())},
        "auc_area": round(auc(present_area, absent_area), 3), "auc_score": round(auc(present_score, absent_score), 3),
    }))


if __name__ == "__main__":
    main()
