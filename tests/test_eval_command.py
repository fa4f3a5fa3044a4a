"""`lisa eval --pred-dir` end to end on a tiny ReasonSeg folder, JSONL and refCOCO."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from _data_writers import shape, square, write_jsonl, write_reasonseg, write_refer
from PIL import Image

from lisa.errors import LisaError
from lisa.eval import commands
from lisa.eval.evaluate import evaluate, load_eval_dataset, pred_dir_predictor
from lisa.eval.report import build_report
from lisa.inference.render import text_band


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    args = parser.parse_args(["eval", *argv])
    return args.run(args)


def _reasonseg(root: Path, preds: Path) -> None:
    preds.mkdir(parents=True)
    for k in range(5):
        write_reasonseg(root / "val", f"img{k}", [f"thing {k}"], k % 2 == 1,
                        [shape("target", square(0, 0, 9, 9)), shape("ignore", square(20, 20, 25, 25))])
        pred = np.zeros((30, 40), np.uint8)
        pred[0:10, 0:10 - 2 * k] = 255  # k = 0 is perfect, then worse
        pred[22, 22] = 1  # inside the ignore region: never counted
        Image.fromarray(pred).save(preds / f"img{k}.png")


def test_pred_dir_report_and_summary(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    _reasonseg(tmp_path / "d", tmp_path / "p")
    out, vis = tmp_path / "report.json", tmp_path / "vis"
    code = _run(["--dataset", "reasonseg", "--data-dir", str(tmp_path / "d"), "--split", "val",
                 "--pred-dir", str(tmp_path / "p"), "--out", str(out), "--visualize", str(vis), "--worst", "3"])
    assert code == 0
    report = json.loads(out.read_text())
    ious = [(100 - 20 * k) / (100 + 1e-5) if k else 100 / (100 + 1e-5) for k in range(5)]
    assert report["n"] == 5 and report["giou"] == pytest.approx(sum(ious) / (5 + 1e-5))
    assert report["ciou"] == pytest.approx(300 / 500)
    assert report["subsets"]["short"]["n"] == 3 and report["subsets"]["long"]["n"] == 2
    assert [w["item_id"] for w in report["worst"]] == ["img4", "img3", "img2"]
    assert len(report["per_sample"]) == 5
    assert capsys.readouterr().out.strip().splitlines()[-1] == (
        f"gIoU={report['giou']:.4f} cIoU={report['ciou']:.4f} n=5")
    pictures = sorted(p.name for p in vis.iterdir())
    assert len(pictures) == 3 and pictures[0].startswith("000_img4")
    picture = np.asarray(Image.open(vis / pictures[0]))  # 30x40 panels enlarged x9, 6-px gaps, a caption
    assert picture.shape[1] == 3 * 40 * 9 + 12
    item = report["worst"][0]
    caption = text_band(picture.shape[1], [(f"input  |  target (green)  |  prediction (red)  |  IoU {item['iou']:.3f}", None),
                                           (f"Q: {item['query']}", None)], size=14)
    np.testing.assert_array_equal(picture[30 * 9 :], np.asarray(caption))  # the query and the IoU, as written


def test_split_evaluation_merges_to_the_same_numbers(tmp_path: Path) -> None:
    _reasonseg(tmp_path / "d", tmp_path / "p")
    items = load_eval_dataset("reasonseg", tmp_path / "d", "val")
    predict = pred_dir_predictor(tmp_path / "p")
    whole, _ = evaluate(items, predict, batch_size=2, progress=False)
    first, _ = evaluate([items[i] for i in (0, 3)], predict, progress=False)
    second, _ = evaluate([items[i] for i in (4, 1, 2)], predict, progress=False)
    merged = build_report(first.merge(second))
    reference = build_report(whole)
    for key in ("giou", "ciou", "n", "subsets", "sums"):
        assert merged[key] == reference[key]


def test_missing_or_wrong_size_prediction_is_an_error(tmp_path: Path) -> None:
    _reasonseg(tmp_path / "d", tmp_path / "p")
    (tmp_path / "p" / "img3.png").unlink()
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(tmp_path / "p" / "img1.png")
    argv = ["--dataset", "reasonseg", "--data-dir", str(tmp_path / "d"), "--pred-dir", str(tmp_path / "p"),
            "--no-progress"]
    with pytest.raises(LisaError, match="img1.png is 5x5 but the image is 40x30"):
        _run(argv)
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "p" / "img1.png")
    with pytest.raises(LisaError, match=r"prediction .*img3\.png not found"):
        _run(argv)


def test_jsonl_and_refcoco_pred_dir(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_refer(tmp_path / "r")
    preds = tmp_path / "p"
    preds.mkdir()
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(preds / "COCO_train2014_1.png")
    assert _run(["--dataset", "refcoco", "--data-dir", str(tmp_path / "r"), "--split", "val",
                 "--pred-dir", str(preds), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == "gIoU=0.0000 cIoU=0.0000 n=1"
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(tmp_path / "r" / "img.png")
    write_jsonl(tmp_path / "r" / "q.jsonl", [{"image": "img.png", "query": "nothing here"}])
    Image.fromarray(np.zeros((30, 40), np.uint8)).save(preds / "img.png")
    assert _run(["--dataset", "jsonl", "--data-dir", str(tmp_path / "r"), "--pred-dir", str(preds),
                 "--no-progress"]) == 0
    assert capsys.readouterr().out.strip() == "gIoU=1.0000 cIoU=0.0000 n=1"  # empty on empty scores 1


def test_teacher_forced_needs_a_model(tmp_path: Path) -> None:
    _reasonseg(tmp_path / "d", tmp_path / "p")
    with pytest.raises(LisaError, match="--teacher-forced needs --model"):
        _run(["--dataset", "reasonseg", "--data-dir", str(tmp_path / "d"), "--pred-dir", str(tmp_path / "p"),
              "--teacher-forced"])


def test_names_selects_jsonl_files_and_is_refused_elsewhere(tmp_path) -> None:
    from lisa.errors import LisaError
    from lisa.eval.evaluate import load_eval_dataset

    with pytest.raises(LisaError, match="--names selects JSONL files"):
        load_eval_dataset("reasonseg", tmp_path, "val", names=["referring"])
