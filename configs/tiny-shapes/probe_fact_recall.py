"""Does the model know the world's facts, and does it use them when it looks at a scene?

    python configs/tiny-shapes/probe_fact_recall.py --model M --data-dir data/shapes-fresh [--limit 48]

1. As text: every corpus question of `facts.jsonl` (blank image, the corpus's own wordings),
   split into held-out and seen concepts: how often the answer contains the corpus answer.
2. In a scene: the first `--limit` reasoning queries of the test split (held-out concepts only),
   asked with "Please output segmentation mask and explain why.": how often the answer states
   the query's fact (`lisa.data.shapes.facts`) word for word.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from generated_answers import batched_answers
from probe_reasoning_families import WORDINGS

from lisa import LisaPipeline
from lisa.data.shapes.facts import CONCEPTS

EXPLAIN = "Please output segmentation mask and explain why."
BATCH = 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=48)
    parser.add_argument("--threads", default="auto")
    args = parser.parse_args()
    pipe = LisaPipeline.from_pretrained(args.model, device="cpu", dtype="fp32", threads=args.threads)
    concepts = {c.key: c for c in CONCEPTS}

    records = [json.loads(line) for line in (args.data_dir / "facts.jsonl").open()]
    records = [r for r in records if r["concept"] in concepts]
    said = batched_answers(pipe, [str(args.data_dir / "blank.png")] * len(records), [r["query"] for r in records], BATCH)
    for held_out in (True, False):
        rows = [r["answer"] in text for r, text in zip(records, said) if concepts[r["concept"]].held_out == held_out]
        print(f"as text, {'held-out' if held_out else 'seen'} concepts: {sum(rows)}/{len(rows)} answered right")

    split = args.data_dir / "test"
    scenes = []
    for path in sorted(split.glob("test_*.json")):
        text = json.loads(path.read_text())["text"][0]
        if text.lower() in WORDINGS:  # a fact query, not a rule
            scenes.append((str(path.with_suffix(".jpg")), text))
    scenes = scenes[: args.limit]
    said = batched_answers(pipe, [s[0] for s in scenes], [f"{s[1]} {EXPLAIN}" for s in scenes], BATCH)
    stated = sum(WORDINGS[text.lower()].reason in answer for (_, text), answer in zip(scenes, said))
    print(f"in a scene, held-out concepts asked to explain: {stated}/{len(scenes)} answers state the fact")
    for (_, text), answer in list(zip(scenes, said))[:8]:
        print(f"  {text!r} -> {answer!r}")


if __name__ == "__main__":
    main()
