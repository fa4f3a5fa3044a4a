"""`accelerate launch -m lisa.cli eval` in 2 processes (gloo on this CPU) reports exactly what one
process reports: the sums, the per-sample list, the worst cases, their pictures, and with
--model the saved predictions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _data_writers import shape, square, write_reasonseg
from _launch import finish, start
from PIL import Image

pytestmark = pytest.mark.slow  # subprocesses: 2-process launches

ITEMS = 7  # odd: the two blocks differ in size


def _dataset(root: Path) -> tuple[Path, Path]:
    """ITEMS ReasonSeg items (short and long queries) and a folder of predictions of varied IoU."""
    data, preds = root / "d", root / "p"
    preds.mkdir(parents=True)
    for k in range(ITEMS):
        write_reasonseg(data / "val", f"img{k}", [f"thing {k}"], k % 3 == 0,
                        [shape("target", square(2, 2, 20, 20)), shape("ignore", square(25, 25, 28, 28))])
        pred = np.zeros((30, 40), np.uint8)
        pred[2 + k : 21, 2 : 21 + 2 * k] = 255
        Image.fromarray(pred).save(preds / f"img{k}.png")
    return data, preds


def _eval(processes: int, argv: list[str], out: Path) -> str:
    """Run `lisa eval ARGV --out OUT/report.json`; returns its stdout."""
    argv = ["eval", "--dataset", "reasonseg", "--split", "val", "--no-progress", "--worst", "3",
            "--out", str(out / "report.json"), "--visualize", str(out / "worst"), *argv]
    stdout, _ = finish(start(processes, argv, out.with_name(out.name + "-log")), out.with_name(out.name + "-log"))
    return stdout


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _assert_same_outputs(one: Path, two: Path, stdout_one: str, stdout_two: str) -> None:
    report_one, report_two = (json.loads((d / "report.json").read_text()) for d in (one, two))
    assert report_two == report_one  # exact: the sums are exact, the order is the dataset's
    assert len(report_two["per_sample"]) == ITEMS and len(report_two["worst"]) == 3
    assert (two / "report.json").read_bytes() == (one / "report.json").read_bytes()
    assert _files(two / "worst") == _files(one / "worst") and len(_files(one / "worst")) == 3
    assert stdout_two == stdout_one and stdout_two.count("gIoU=") == 1  # the main process alone reports


def test_two_process_pred_dir_eval_equals_one_process(tmp_path: Path) -> None:
    data, preds = _dataset(tmp_path)
    argv = ["--data-dir", str(data), "--pred-dir", str(preds)]
    stdout_one = _eval(1, argv, tmp_path / "one")
    stdout_two = _eval(2, argv, tmp_path / "two")
    _assert_same_outputs(tmp_path / "one", tmp_path / "two", stdout_one, stdout_two)
    ious = [s["iou"] for s in json.loads((tmp_path / "one" / "report.json").read_text())["per_sample"]]
    assert len(set(ious)) == ITEMS  # every item scored differently: a lost or doubled item would show


def test_two_process_model_eval_equals_one_process(tmp_path: Path, tiny_model_dir: Path) -> None:
    data, _ = _dataset(tmp_path)
    outputs = {}
    for processes, name in ((1, "one"), (2, "two")):
        argv = ["--data-dir", str(data), "--model", str(tiny_model_dir), "--device", "cpu", "--batch-size", "1",
                "--max-new-tokens", "4", "--save-predictions", str(tmp_path / name / "pred")]
        outputs[name] = _eval(processes, argv, tmp_path / name)
    _assert_same_outputs(tmp_path / "one", tmp_path / "two", outputs["one"], outputs["two"])
    saved = _files(tmp_path / "two" / "pred")
    assert saved == _files(tmp_path / "one" / "pred") and len(saved) == ITEMS
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind
