"""Progress bar (loss components, samples/s, ETA), a JSONL log and TensorBoard when installed."""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

LOG_NAME = "log.jsonl"


def log_line(record: dict) -> str:
    """One JSONL log line, stamped with the wall clock so that a stage's time can be read back
    even across resumes."""
    return json.dumps({**record, "time": round(time.time(), 1)}) + "\n"


class RunLogger:
    def __init__(self, run_dir: Path, active: bool, progress: bool, total_steps: int, start_step: int) -> None:
        from tqdm import tqdm

        self.active = active
        self.path = run_dir / LOG_NAME
        if active:
            self._drop_after(start_step)
        self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step",
                        disable=not (active and progress), dynamic_ncols=True)
        self.board = _tensorboard(run_dir / "tensorboard") if active else None

    def _drop_after(self, step: int) -> None:
        """A resumed run rewrites the log lines of steps after its checkpoint."""
        if not self.path.is_file():
            return
        kept = [line for line in self.path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        self.path.write_text("".join(line + "\n" for line in kept))

    def _write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(log_line(record))
        if self.board is not None:
            for key, value in record.items():
                if key != "step":
                    self.board.add_scalar(key, value, record["step"])

    def log_step(self, step: int, losses: torch.Tensor, lr: float, samples_per_s: float, force: bool) -> None:
        if not self.active:
            return
        loss, ce, bce, dice = (float(v) for v in losses)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.3f}", ce=f"{ce:.3f}", bce=f"{bce:.3f}", dice=f"{dice:.3f}",
                             sps=f"{samples_per_s:.2f}")
        if force:
            self._write({"step": step, "loss": loss, "ce": ce, "bce": bce, "dice": dice, "lr": lr,
                         "samples_per_s": samples_per_s, "eta_s": _eta(self.bar)})

    def log_val(self, step: int, scores: dict[str, float]) -> None:
        if self.active:
            self._write({"step": step, **{f"val_{k}": v for k, v in scores.items()}})
            self.bar.write(f"step {step}: val gIoU {scores['giou']:.4f} cIoU {scores['ciou']:.4f}")

    def close(self) -> None:
        self.bar.close()
        if self.board is not None:
            self.board.close()


def _eta(bar) -> float | None:
    """Seconds left at the bar's current rate (None while unknown or with the bar disabled)."""
    rate = bar.format_dict.get("rate")
    return float((bar.total - bar.n) / rate) if rate else None


def _tensorboard(directory: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(directory))
