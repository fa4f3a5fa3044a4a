"""Diagnostic: a model's VQA accuracy per kind of question of the shapes world. Counting a colour
or a kind needs only what is in the picture; "What colour is the circle?", "What is the red
thing?" and "Is there a red arrow?" need colour and kind bound to the same object.

    python configs/tiny-shapes/probe_vqa_kinds.py --model runs/lisa-tiny-v2/2-vlm/model

Prints one JSON line: exact answers per kind of question (correct / asked), generated as users
run the model, on the first --limit questions of the split's vqa.jsonl.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

from generated_answers import add_answer_arguments, generated_answers


def question_kind(question: str) -> str:
    if question.startswith("What colour"):
        return "colour_of"
    if question.startswith("What is"):
        return "kind_of"
    if re.match(r"How many \w+ shapes", question):
        return "count_colour"
    if question.startswith("How many"):
        return "count_kind"
    return "is_there"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_answer_arguments(parser, limit=400)
    parser.add_argument("--data-dir", type=Path, default=Path("data/shapes"))
    args = parser.parse_args()
    records, answers = generated_answers(args, args.data_dir, "vqa")
    right: Counter[str] = Counter()
    asked: Counter[str] = Counter()
    for record, answer in zip(records, answers):
        kind = question_kind(record["query"])
        asked[kind] += 1
        right[kind] += answer.strip() == record["answer"]
    print(json.dumps({"model": args.model, **{k: f"{right[k]}/{asked[k]} = {right[k] / asked[k]:.2f}"
                                              for k in sorted(asked)}}))


if __name__ == "__main__":
    main()
