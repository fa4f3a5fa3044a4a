"""Plot SAM-stage validation curves (val_box_miou, val_point_miou in RUN/log.jsonl) into a PNG.

    python configs/tiny-shapes/plot_sam_curves.py --run "v1 SAM + 3000 steps=RUN1" \
        --run "patch 8=RUN2:1750" --out docs/img/sam-curves.png

NAME=RUN[:OFFSET]: OFFSET is added to the run's steps (a run that starts from another's
checkpoint continues its x axis). --start NAME=BOX,POINT adds a step-0 point measured apart.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def read_curve(run: Path) -> list[tuple[int, float, float]]:
    """(step, box mIoU, point mIoU) of every validation in the log; a resumed step keeps its last."""
    points: dict[int, tuple[float, float]] = {}
    for line in (run / "log.jsonl").read_text().splitlines():
        entry = json.loads(line)
        if "val_box_miou" in entry:
            points[entry["step"]] = (entry["val_box_miou"], entry["val_point_miou"])
    return [(step, box, point) for step, (box, point) in sorted(points.items())]


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", action="append", required=True, help="NAME=RUN_DIR[:STEP_OFFSET]")
    parser.add_argument("--start", action="append", default=[], help="NAME=BOX,POINT at the run's first step")
    parser.add_argument("--target", type=float, default=0.92, help="a horizontal line (box mIoU)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    starts = {name: tuple(map(float, value.split(","))) for name, value in (s.split("=", 1) for s in args.start)}
    figure, axis = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    for spec in args.run:
        name, _, where = spec.partition("=")
        path, _, offset = where.partition(":")
        shift = int(offset or 0)
        curve = [(shift + s, b, p) for s, b, p in read_curve(Path(path))]
        if name in starts:
            curve.insert(0, (shift, *starts[name]))
        steps = [s for s, _, _ in curve]
        line, = axis.plot(steps, [b for _, b, _ in curve], marker="o", label=f"{name}: box")
        axis.plot(steps, [p for _, _, p in curve], marker=".", linestyle="--", color=line.get_color(),
                  label=f"{name}: point")
    axis.axhline(args.target, color="grey", linewidth=0.8, linestyle=":")
    axis.set_xlabel("SAM-stage steps (batch 8)")
    axis.set_ylabel("val mIoU (200 instances)")
    axis.legend(fontsize=7, loc="lower right")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
