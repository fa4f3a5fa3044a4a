"""Diagnostic: would a reasoning answer's mask be better if the object it names were asked for
again as a plain referring query? A model trained with `explain_first` answers "A frog is green.
So the green heart is the answer: [SEG]."; its referring masks are far better than its reasoning
ones (lisa-tiny: val cIoU 0.45 against dev gIoU 0.28). For every reasoning query of a split, this
generates the answer as users get it, and where it names an object ("So the X is the answer")
asks "What is the X in this image? Please output segmentation mask." (the referring queries'
evaluation wording) and scores that mask instead. Real generation both times.

    python configs/tiny-shapes/probe_restate.py --model src/lisa/checkpoints/lisa-tiny \\
        --data-dir data/shapes-dev --split test

Prints one JSON line: gIoU and cIoU as answered and with the restated queries' masks, over all
queries and over those whose answer names an object, and how often the restated query gets no
mask (its answer declines).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from lisa import LisaPipeline
from lisa.eval.evaluate import load_eval_dataset, union_mask
from lisa.eval.metrics import IoUAccumulator, score_mask

NAMED = re.compile(r"So (the [^.:]*?) is the answer")
REFERRING = "What is {} in this image? Please output segmentation mask."


def named_object(answer: str) -> str | None:
    """The object an explain-first answer names ("the green heart"), or None."""
    found = NAMED.search(answer)
    return found.group(1) if found else None


def masks(pipe: LisaPipeline, images: list, queries: list[str], shapes: list[tuple[int, int]],
          batch: int) -> tuple[list[np.ndarray], list[str]]:
    out_masks: list[np.ndarray] = []
    texts: list[str] = []
    for start in range(0, len(queries), batch):
        results = pipe(images[start : start + batch], queries[start : start + batch], raw=True)
        for result, shape in zip(results, shapes[start : start + batch]):
            out_masks.append(union_mask(result.masks, *shape))
            texts.append(result.text)
    return out_masks, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("data/shapes-dev"))
    parser.add_argument("--split", default="test")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--threads", default="auto")
    args = parser.parse_args()
    pipe = LisaPipeline.from_pretrained(args.model, device="cpu", dtype="fp32", threads=args.threads)
    items = list(load_eval_dataset("reasonseg", args.data_dir, args.split))
    images = [item.image for item in items]
    shapes = [item.target.shape for item in items]
    answered, texts = masks(pipe, images, [item.query for item in items], shapes, args.batch_size)
    names = [named_object(text) for text in texts]
    chosen = [i for i, name in enumerate(names) if name is not None]
    again, again_texts = masks(pipe, [images[i] for i in chosen], [REFERRING.format(names[i]) for i in chosen],
                               [shapes[i] for i in chosen], args.batch_size)
    restated = list(answered)
    for i, mask in zip(chosen, again):
        restated[i] = mask
    report: dict = {"model": args.model, "n": len(items), "answers_naming_an_object": len(chosen),
                    "restated_without_mask": sum(not m.any() for m in again)}
    for label, subset in (("all", range(len(items))), ("naming_an_object", chosen)):
        for way, predicted in (("as_answered", answered), ("restated", restated)):
            scores = IoUAccumulator()
            for i in subset:
                scores.add(score_mask(predicted[i], items[i].target))
            report[f"{label}_{way}"] = {"giou": round(scores.giou, 4), "ciou": round(scores.ciou, 4)}
    report["examples"] = [{"answer": texts[i], "restated_answer": t} for i, t in list(zip(chosen, again_texts))[:5]]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
