"""Print the README's results table from the reports written by evaluate.sh.

    python configs/tiny-shapes/results_table.py runs/lisa-tiny/eval-shapes
    python configs/tiny-shapes/results_table.py SEED0/eval-shapes SEED1/eval-shapes   # mean ± sd

With several folders (one per training seed, each scored on the same test split) every cell is
the mean over the folders that hold that row, ± the sample standard deviation.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ROWS = [
    ("baseline", "Text encoder + SAM decoder, no LLM (explicit data only)"),
    ("3-lisa", "lisa-tiny zero-shot (no reasoning samples)"),
    ("4-reason", "lisa-tiny + 239 reasoning samples (shipped)"),
]
HEADER = ("| model | short gIoU | short cIoU | long gIoU | long cIoU | overall gIoU | overall cIoU "
          "| no-target acc. | absent-object acc. | present, same phrasing, declined | referring cIoU "
          "| referring declined | VQA acc. |")


def load(folder: Path, name: str) -> dict | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def row_values(folder: Path, key: str) -> list[float | None] | None:
    """One row's numbers from one folder, or None when the folder has no reasoning report for it."""
    reason, refer, vqa, absent, present = (
        load(folder, f"{key}-{part}") for part in ("reasonseg", "referring", "vqa", "absent", "present"))
    if reason is None:
        return None
    short, long = reason["subsets"]["short"], reason["subsets"]["long"]
    return [short["giou"], short["ciou"], long["giou"], long["ciou"], reason["giou"], reason["ciou"],
            reason.get("no_target", {}).get("accuracy"), absent["no_target"]["accuracy"] if absent else None,
            present["no_target"]["missed_targets"] if present else None,
            refer["ciou"] if refer else None,
            refer.get("no_target", {}).get("missed_targets") if refer else None,
            vqa["answers"]["accuracy"] if vqa and "answers" in vqa else None]


def cell(values: list[float]) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main(folders: list[Path]) -> None:
    print(HEADER)
    print("|" + "---|" * HEADER.count(" | ") + "---|")
    for key, label in ROWS:
        rows = [r for r in (row_values(f, key) for f in folders) if r is not None]
        if not rows:
            continue
        columns = [[r[i] for r in rows if r[i] is not None] for i in range(len(rows[0]))]
        seeds = f" ({len(rows)} seeds)" if len(rows) > 1 else ""
        print(f"| {label}{seeds} | " + " | ".join(cell(c) for c in columns) + " |")
    reason = load(folders[0], "4-reason-reasonseg") or {}
    print(f"\nn = {reason.get('n', '?')} reasoning queries "
          f"({reason.get('no_target', {}).get('n', '?')} with no target), test split; absent-object: "
          f"explicit queries for a shape that is not in the scene (\"the purple star\"), declined or answered "
          f"with an empty mask; present, same phrasing: queries of that form for a shape that is there, answered "
          f"with no mask (lower is better: declining both alike is the phrasing, not the picture); referring "
          f"declined: the referring queries of present shapes answered with no mask (lower is better).")


if __name__ == "__main__":
    main([Path(a) for a in sys.argv[1:]] or [Path("runs/lisa-tiny/eval-shapes")])
