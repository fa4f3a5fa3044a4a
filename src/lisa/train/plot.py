"""`lisa plot RUN`: training curves (loss terms, learning rate, validation metrics) as one PNG,
read from the run's log.jsonl (written by every training loop: LISA stages, SAM stage, baseline)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from lisa.errors import LisaError

LOG_NAME = "log.jsonl"
NOT_PLOTTED = {"step", "time", "eta_s", "samples_per_s", "lr"}  # bookkeeping, or drawn on its own


@dataclass
class Curves:
    """Per-key (steps, values) series of one run's log."""

    losses: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    validation: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    lr: tuple[list[int], list[float]] = field(default_factory=lambda: ([], []))
    skipped_lines: int = 0

    def add(self, series: dict[str, tuple[list[int], list[float]]], key: str, step: int, value: float) -> None:
        steps, values = series.setdefault(key, ([], []))
        steps.append(step)
        values.append(value)


def find_log(run: str | Path) -> Path:
    """RUN may be a run folder (RUN/log.jsonl) or the log file itself."""
    path = Path(run)
    log = path / LOG_NAME if path.is_dir() else path
    if not log.is_file():
        raise LisaError(f"no training log at {log}; give a run folder (the run_dir of `lisa train`) or its {LOG_NAME}")
    return log


def read_curves(log: Path) -> Curves:
    """Parse log.jsonl; lines that are not a JSON object with an integer ``step`` are counted and
    skipped (a run killed mid-write leaves a partial last line)."""
    curves = Curves()
    for line in log.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = int(record["step"])
        except (ValueError, KeyError, TypeError):
            curves.skipped_lines += 1
            continue
        for key, value in record.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            if key == "lr":
                curves.lr[0].append(step)
                curves.lr[1].append(float(value))
            elif key.startswith("val_"):
                curves.add(curves.validation, key[len("val_"):], step, float(value))
            elif key not in NOT_PLOTTED:
                curves.add(curves.losses, key, step, float(value))
    if not curves.losses and not curves.validation:
        raise LisaError(f"{log} holds no loss or validation values to plot")
    return curves


def plot_curves(curves: Curves, out: Path, title: str) -> Path:
    """Loss terms (log scale when all positive) | validation metrics | learning rate, over steps."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    panels = [name for name, present in (("losses", curves.losses), ("validation", curves.validation),
                                         ("lr", curves.lr[0])) if present]
    heights = [3 if name != "lr" else 1.6 for name in panels]
    figure, axes = plt.subplots(len(panels), 1, figsize=(9, sum(heights) + 0.8), sharex=True,
                                gridspec_kw={"height_ratios": heights}, squeeze=False)
    for axis, name in zip(axes[:, 0], panels):
        if name == "lr":
            axis.plot(*curves.lr, color="black", linewidth=1.2)
            axis.set_ylabel("learning rate")
            axis.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
        else:
            series = curves.losses if name == "losses" else curves.validation
            for key, (steps, values) in series.items():
                axis.plot(steps, values, label=key, linewidth=1.4, marker="o" if name == "validation" else None,
                          markersize=3)
            if name == "losses" and all(v > 0 for _, values in series.values() for v in values):
                axis.set_yscale("log")
            axis.set_ylabel("loss terms" if name == "losses" else "validation")
            axis.legend(loc="best", fontsize=8, ncols=min(4, len(series)))
        axis.grid(True, alpha=0.3)
    axes[-1, 0].set_xlabel("step")
    figure.suptitle(title)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)
    plt.close(figure)
    return out
