"""Print the README's results table from the reports written by evaluate.sh.

    python configs/tiny-shapes/results_table.py runs/lisa-tiny/eval
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROWS = [
    ("baseline", "Text encoder + SAM decoder, no LLM (explicit data only)"),
    ("3-lisa", "lisa-tiny zero-shot (no reasoning samples)"),
    ("4-reason", "lisa-tiny + 239 reasoning samples (shipped)"),
]


def load(folder: Path, name: str) -> dict | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def main(folder: Path) -> None:
    print("| model | short gIoU | short cIoU | long gIoU | long cIoU | overall gIoU | overall cIoU "
          "| no-target acc. | absent-object acc. | referring cIoU | VQA acc. |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for key, label in ROWS:
        reason, refer, vqa, absent = (load(folder, f"{key}-{part}") for part in ("reasonseg", "referring", "vqa", "absent"))
        if reason is None:
            continue
        short, long = reason["subsets"]["short"], reason["subsets"]["long"]
        cells = [short["giou"], short["ciou"], long["giou"], long["ciou"], reason["giou"], reason["ciou"],
                 reason.get("no_target", {}).get("accuracy"), absent["no_target"]["accuracy"] if absent else None,
                 refer["ciou"] if refer else None,
                 vqa["answers"]["accuracy"] if vqa and "answers" in vqa else None]
        print(f"| {label} | " + " | ".join(cell(c) for c in cells) + " |")
    reason = load(folder, "4-reason-reasonseg") or {}
    print(f"\nn = {reason.get('n', '?')} reasoning queries "
          f"({reason.get('no_target', {}).get('n', '?')} with no target), test split; absent-object: "
          f"explicit queries for a shape that is not in the scene, declined or answered with an empty mask.")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/lisa-tiny/eval"))
