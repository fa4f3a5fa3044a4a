"""Does the mask path see whether a described shape is there? Teacher-forces the answer "[SEG]."
for every absent.jsonl and present.jsonl query of a split (the same bare phrasing, "the red
heart", for a shape that is not there and one that is) and compares the forced masks:

    python configs/tiny-shapes/probe_mask_existence.py --model M --data-dir data/shapes --split val

Prints, as one JSON line, the median mask area of each side, how often the mask is empty, and
for each signal the AUC with which it tells present from absent (0.5: no signal; 1.0: a
threshold separates them) and the share of absent queries a threshold would decline if it may
decline at most 5 % of present ones (the decline target's operating point). The signals: the
mask's area and mean foreground probability (the pipeline's score) and, for a seg head that
reads the image tokens, its read's strongest match (the largest q . k before the softmax, which
the softmax's normalisation hides from the prompts) and its peak weight. The operating point
is also split by what each absent query's scene holds (probe_declines.py's groups: its kind in
another colour, its colour on another kind, or neither): a model that looks declines "neither"
far more often than the near misses.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from probe_declines import Scenes, colour_and_kind, group

from lisa import LisaPipeline
from lisa.data.jsonl import read_records
from lisa.data.templates import eval_query
from lisa.model.seg_head import ImageAttention

FORCED = "[SEG]."
PRESENT_DECLINED = 0.05  # the decline target's ceiling on present objects declined


class ReadRecorder:
    """Records, per call of the seg head's image read, each state's largest raw match (q . k, scaled
    as in the softmax) and its peak attention weight."""

    def __init__(self, read: ImageAttention) -> None:
        self.read, self.original = read, read.weights
        self.match: list[float] = []
        self.peak: list[float] = []
        read.weights = self.weights  # type: ignore[method-assign]

    def weights(self, state: torch.Tensor, tokens: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        weights = self.original(state, tokens, valid)
        self.match += self.read.scores(state, tokens, valid).max(-1).values.tolist()
        self.peak += weights.max(-1).values.tolist()
        return weights


def forced_masks(pipe: LisaPipeline, data_dir: Path, split: str, family: str, batch: int,
                 recorder: ReadRecorder | None) -> dict[str, np.ndarray]:
    """The signals of the forced mask of every query of ``family``: area, score and (with a
    recorder) the read's match and peak."""
    records = read_records(data_dir, split, [family])
    areas, scores = [], []
    if recorder is not None:
        recorder.match, recorder.peak = [], []
    for start in range(0, len(records), batch):
        chunk = records[start:start + batch]
        results = pipe([str(r.image) for r in chunk], [eval_query(r.query, r.is_sentence) for r in chunk],
                       answers=[FORCED] * len(chunk), raw=True)
        for result in results:
            areas.append(float(result.masks.sum()) if result.masks.size else 0.0)
            scores.append(float(result.scores[0]) if result.scores.size else 0.0)
    signals = {"area": np.array(areas), "score": np.array(scores)}
    if recorder is not None:
        if len(recorder.match) != len(records):  # one [SEG] per forced answer, one read each
            raise RuntimeError(f"the read ran for {len(recorder.match)} states, expected {len(records)}")
        signals |= {"read_match": np.array(recorder.match), "read_peak": np.array(recorder.peak)}
    return signals


def auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """P(a present query's value > an absent one's), ties counted half."""
    greater = (positive[:, None] > negative[None]).mean()
    ties = (positive[:, None] == negative[None]).mean()
    return float(greater + 0.5 * ties)


def absent_declined(positive: np.ndarray, negative: np.ndarray, present_declined: float = PRESENT_DECLINED) -> float:
    """The share of absent queries below the highest threshold that declines at most
    ``present_declined`` of the present ones (a query is declined when its value is below)."""
    allowed = int(np.floor(present_declined * len(positive)))  # present values that may fall below
    threshold = np.sort(positive)[allowed]  # below it: exactly ``allowed`` of them (ties: fewer)
    return float((negative < threshold).mean())


def absent_declined_by_group(positive: np.ndarray, negative: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """``absent_declined`` for the absent queries of each group (the threshold depends only on the
    present ones, so it is the same for every group)."""
    return {g: round(absent_declined(positive, negative[groups == g]), 3) for g in sorted(set(groups))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("data/shapes"))
    parser.add_argument("--split", default="val")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    pipe = LisaPipeline.from_pretrained(args.model, device="cpu", dtype="float32")
    read = pipe.model.seg_head.image_attention
    recorder = ReadRecorder(read) if read is not None and pipe.model.seg_head.read == "image_tokens" else None
    present = forced_masks(pipe, args.data_dir, args.split, "present", args.batch_size, recorder)
    absent = forced_masks(pipe, args.data_dir, args.split, "absent", args.batch_size, recorder)
    scenes = Scenes(args.data_dir, args.split)
    groups = np.array([group("absent", *colour_and_kind(r.query), scenes.objects(str(r.image)))
                       for r in read_records(args.data_dir, args.split, ["absent"])])
    print(json.dumps({
        "model": args.model, "present": len(present["area"]), "absent": len(absent["area"]),
        "median_area": {"present": float(np.median(present["area"])), "absent": float(np.median(absent["area"]))},
        "empty": {"present": float((present["area"] == 0).mean()), "absent": float((absent["area"] == 0).mean())},
        **{f"auc_{name}": round(auc(present[name], absent[name]), 3) for name in present},
        **{f"absent_declined_{name}": round(absent_declined(present[name], absent[name]), 3) for name in present},
        "absent_groups": {g: int((groups == g).sum()) for g in sorted(set(groups))},
        "absent_declined_by_group": {name: absent_declined_by_group(present[name], absent[name], groups)
                                     for name in present},
    }))


if __name__ == "__main__":
    main()
