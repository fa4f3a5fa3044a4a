"""`lisa eval --model` with the tiny random model: generation and teacher-forced runs end to end."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from _data_writers import shape, square, write_reasonseg

from lisa.eval import commands
from lisa.inference.render import text_band
from lisa.model import build



@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build.write_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    args = parser.parse_args(["eval", *argv])
    return args.run(args)


@pytest.mark.parametrize("mode", [[], ["--teacher-forced"]])
def test_model_eval_runs_and_reports(tmp_path: Path, tiny_model: Path, mode: list[str],
                                     capsys: pytest.CaptureFixture) -> None:
    for k in range(3):
        write_reasonseg(tmp_path / "d" / "val", f"i{k}", [f"thing {k}"], k == 2, [shape("target", square(2, 2, 20, 20))])
    out = tmp_path / "r.json"
    code = _run(["--dataset", "reasonseg", "--data-dir", str(tmp_path / "d"), "--model", str(tiny_model),
                 "--device", "cpu", "--batch-size", "2", "--max-new-tokens", "4", "--no-progress",
                 "--out", str(out), "--visualize", str(tmp_path / "vis"), *mode])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["n"] == 3 and 0.0 <= report["giou"] <= 1.0
    assert report["info"]["mode"] == ("teacher_forced" if mode else "generate")
    if mode:
        assert all(s["answer"] == "[SEG]." for s in report["per_sample"])
    assert len(list((tmp_path / "vis").iterdir())) == 3
    worst = report["worst"][0]  # its picture carries the query, the answer and the IoU
    picture = np.asarray(Image.open(sorted((tmp_path / "vis").iterdir())[0]))
    caption = text_band(picture.shape[1], [
        (f"input  |  target (green)  |  prediction (red)  |  IoU {worst['iou']:.3f}", None),
        (f"Q: {worst['query']}", None), (f"A: {worst['answer']}", None)], size=14)
    np.testing.assert_array_equal(picture[-caption.height :], np.asarray(caption))
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("gIoU=")
