"""Training without a progress bar still logs an ETA (log.jsonl and one stderr line per log)."""

from __future__ import annotations

import json
import time

import torch

from lisa.train.progress import RunLogger


def test_no_progress_logs_an_eta(tmp_path, capsys) -> None:
    logger = RunLogger(tmp_path, active=True, progress=False, total_steps=8, start_step=2)  # resumed at step 2
    for step in range(3, 7):
        time.sleep(0.02)
        logger.log_step(step, torch.tensor([1.0, 0.5, 0.3, 0.2]), 1e-3, 4.0, force=True)
    logger.close()
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    etas = [r["eta_s"] for r in records]
    assert all(isinstance(eta, float) and eta >= 0 for eta in etas), etas
    assert etas[-1] < etas[0]  # fewer steps left
    # about (elapsed / steps done) * steps left: at least the 10 ms per step slept, times steps left
    assert etas[0] >= 0.01 * (8 - 3)
    err = capsys.readouterr().err
    assert err.count("eta ") == 4 and "step 6/8" in err
