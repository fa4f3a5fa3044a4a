"""Diagnostic: does a model's LM know where an object is? Asks the shapes world's locate questions
("Where is the red circle?", answered with the object's box on the vision tower's 8x8 grid by
`lisa shapes generate`) and scores the box in the generated answer, coordinate by coordinate.

    python configs/tiny-shapes/probe_locate.py --model runs/lisa-tiny-v3/2b-vlm-locate/model \
        --data-dir data/shapes --split val --limit 300

Prints one JSON line: exact answers, coordinates right, mean error in cells, and the same error
for the best constant guess (every coordinate answered with the split's median), which is what a
model that does not look at the image can reach.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from generated_answers import add_answer_arguments, generated_answers

BOX = re.compile(r"at x (\d+) to (\d+), y (\d+) to (\d+)\.")


def parse_box(text: str) -> tuple[int, int, int, int] | None:
    match = BOX.search(text)
    return None if match is None else tuple(int(v) for v in match.groups())  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_answer_arguments(parser, limit=300)
    parser.add_argument("--data-dir", type=Path, required=True)
    args = parser.parse_args()
    records, answers = generated_answers(args, args.data_dir, "locate")
    truth = np.array([parse_box(r["answer"]) for r in records])
    predicted = np.full_like(truth, -1)
    exact = 0
    for index, (record, answer) in enumerate(zip(records, answers)):
        exact += answer.strip() == record["answer"]
        box = parse_box(answer)
        if box is not None:
            predicted[index] = box
    parsed = (predicted >= 0).all(axis=1)
    error = np.abs(predicted[parsed] - truth[parsed])
    constant = np.abs(truth - np.median(truth, axis=0).round())
    print(json.dumps({
        "model": args.model, "n": len(records), "exact_answers": round(exact / len(records), 3),
        "boxes_parsed": round(float(parsed.mean()), 3),
        "coordinates_right": round(float((error == 0).mean()), 3) if error.size else 0.0,
        "mean_error_cells": round(float(error.mean()), 3) if error.size else None,
        "constant_guess_error_cells": round(float(constant.mean()), 3),
        "constant_guess_right": round(float((constant == 0).mean()), 3),
    }))


if __name__ == "__main__":
    main()
