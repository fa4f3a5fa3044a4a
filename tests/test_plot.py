"""`lisa plot RUN`: curves from a run's log.jsonl, as a PNG."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from lisa.cli import main
from lisa.train.plot import read_curves
from lisa.train.progress import RunLogger


def _run(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    logger = RunLogger(tmp_path, active=True, progress=False, total_steps=40, start_step=0)
    for step in range(1, 41):
        losses = torch.tensor([2.0 / step + 0.1, 1.0 / step, 0.5 / step + 0.05, 0.5 / step + 0.05])
        logger.log_step(step, losses, 1e-3 * step / 40, 3.0, force=step % 5 == 0)
        if step % 20 == 0:
            logger.log_val(step, {"giou": step / 100, "ciou": step / 80})
    logger.close()
    with open(tmp_path / "log.jsonl", "a") as handle:
        handle.write('{"step": 45, "loss": 0.1')  # a run killed while writing
    return tmp_path


def test_curves_are_read_from_the_log(tmp_path) -> None:
    curves = read_curves(_run(tmp_path) / "log.jsonl")
    assert set(curves.losses) == {"loss", "ce", "bce", "dice"} and set(curves.validation) == {"giou", "ciou"}
    assert curves.losses["loss"][0] == list(range(5, 41, 5))
    assert curves.losses["loss"][1][0] == np.float32(2.0 / 5 + 0.1)
    assert curves.validation["giou"] == ([20, 40], [0.2, 0.4])
    assert curves.lr[1][-1] == 1e-3 and curves.skipped_lines == 1


def test_plot_command_writes_the_png(tmp_path, capsys) -> None:
    run = _run(tmp_path / "run")
    assert main(["plot", str(run)]) == 0
    assert "1 unreadable log line(s) skipped" in capsys.readouterr().out
    picture = np.asarray(Image.open(run / "curves.png").convert("RGB")).astype(int)
    assert picture.shape[1] == 990 and picture.shape[0] > 800  # 9 in x 110 dpi, three panels
    first_colour = np.array([0x1F, 0x77, 0xB4])  # matplotlib's first line colour: the loss, then gIoU
    assert (np.abs(picture - first_colour).sum(-1) < 30).sum() > 500


def test_plot_errors_are_one_line(tmp_path, capsys) -> None:
    assert main(["plot", str(tmp_path)]) == 2
    assert "no training log" in capsys.readouterr().err
    (tmp_path / "log.jsonl").write_text('{"step": 1, "note": "text only"}\n')
    assert main(["plot", str(tmp_path)]) == 2
    assert "no loss or validation values" in capsys.readouterr().err
