"""Progress bar (loss components, samples/s, ETA), a JSONL log and TensorBoard when installed."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

LOG_NAME = "log.jsonl"


def log_line(record: dict) -> str:
    """One JSONL log line, stamped with the wall clock so that a stage's time can be read back
    even across resumes."""
    return json.dumps({**record, "time": round(time.time(), 1)}) + "\n"


def drop_log_after(path: Path, step: int, validated: set[int] | None = None) -> None:
    """A resumed run trains the steps after its checkpoint again: drop their log lines (and the
    validation lines of steps not in ``validated``, which run again too), so each step is logged once."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            logged_step = int(record["step"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut off by a kill
        is_val = any(key.startswith("val_") for key in record)
        if logged_step <= step and not (is_val and validated is not None and logged_step not in validated):
            kept.append(line)
    path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")


class RunLogger:
    def __init__(self, run_dir: Path, active: bool, progress: bool, total_steps: int, start_step: int,
                 validated: set[int] | None = None) -> None:
        """``start_step``: the checkpoint a run resumes from; ``validated``: the steps whose
        validation that checkpoint holds (None: keep every validation line up to ``start_step``)."""
        from tqdm import tqdm

        self.active = active
        self.path = run_dir / LOG_NAME
        if active:
            drop_log_after(self.path, start_step, validated)
        self.bar = tqdm(total=total_steps, initial=start_step, desc="train", unit="step",
                        disable=not (active and progress), dynamic_ncols=True)
        self.board = _tensorboard(run_dir / "tensorboard") if active else None
        self.total_steps = total_steps
        self._clock = (time.perf_counter(), start_step)  # the ETA's own clock: the bar's is off with --no-progress

    def _write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(log_line(record))
        if self.board is not None:
            for key, value in record.items():
                if key != "step":
                    self.board.add_scalar(key, value, record["step"])

    def log_step(self, step: int, losses: torch.Tensor, lr: float, samples_per_s: float, force: bool,
                 grad_norm: float | None = None, extra: dict[str, float] | None = None) -> None:
        """``grad_norm``: the gradient's norm before clipping (when the run clips); ``extra``: more
        named losses of the step (the presence head's), logged as they are."""
        if not self.active:
            return
        loss, ce, bce, dice = (float(v) for v in losses)
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{loss:.3f}", ce=f"{ce:.3f}", bce=f"{bce:.3f}", dice=f"{dice:.3f}",
                             sps=f"{samples_per_s:.2f}")
        if force:
            eta = self._eta(step)
            norm = {} if grad_norm is None else {"grad_norm": grad_norm}
            self._write({"step": step, "loss": loss, "ce": ce, "bce": bce, "dice": dice, **(extra or {}), "lr": lr,
                         **norm, "samples_per_s": samples_per_s, "eta_s": eta})
            if self.bar.disable:  # no bar: one line per logged step instead
                left = "?" if eta is None else _duration(eta)
                print(f"step {step}/{self.total_steps} loss {loss:.4f} (ce {ce:.4f} bce {bce:.4f} dice {dice:.4f}) "
                      f"{samples_per_s:.2f} samples/s, eta {left}", file=sys.stderr, flush=True)

    def log_val(self, step: int, scores: dict[str, float]) -> None:
        if self.active:
            self._write({"step": step, **{f"val_{k}": v for k, v in scores.items()}})
            self.bar.write(f"step {step}: val gIoU {scores['giou']:.4f} cIoU {scores['ciou']:.4f}")

    def close(self) -> None:
        self.bar.close()
        if self.board is not None:
            self.board.close()

    def _eta(self, step: int) -> float | None:
        """Seconds left at the mean time per step since this run (or resume) started."""
        started, first_step = self._clock
        if step <= first_step:
            return None
        per_step = (time.perf_counter() - started) / (step - first_step)
        return round(per_step * max(0, self.total_steps - step), 1)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def _tensorboard(directory: Path):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(directory))
