"""Prediction files: alpha channels, one file per query, and --save-predictions -> --pred-dir
giving the very same report (ReasonSeg, JSONL and refCOCO-style data, several queries per image)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from _data_writers import shape, square, write_image, write_jsonl, write_reasonseg, write_refer
from PIL import Image

from lisa.errors import LisaError
from lisa.eval import commands
from lisa.eval.predictions import prediction_name


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    args = parser.parse_args(["eval", *argv, "--no-progress"])
    return args.run(args)


def _target(h: int = 30, w: int = 40) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[0:10, 0:10] = 255  # square(0, 0, 9, 9) as the ReasonSeg rasteriser draws it
    return mask


@pytest.mark.parametrize("mode", ["L", "RGBA", "LA", "RGB", "P", "1"])
def test_prediction_modes_read_the_colour_not_the_alpha(tmp_path: Path, mode: str, capsys) -> None:
    write_reasonseg(tmp_path / "d" / "val", "img0", ["thing"], False, [shape("target", square(0, 0, 9, 9))])
    (tmp_path / "p").mkdir()
    Image.fromarray(_target()).convert(mode).save(tmp_path / "p" / "img0.png")  # RGBA / LA: fully opaque
    assert _run(["--dataset", "reasonseg", "--data-dir", str(tmp_path / "d"), "--pred-dir", str(tmp_path / "p")]) == 0
    assert capsys.readouterr().out.strip().endswith("gIoU=1.0000 cIoU=1.0000 n=1"), mode


def _jsonl_two_queries_per_image(root: Path) -> None:
    write_image(root / "img.png", 40, 30)
    write_jsonl(root / "q.jsonl", [
        {"image": "img.png", "query": "left", "targets": [{"polygons": [[0, 0, 10, 0, 10, 10, 0, 10]]}]},
        {"image": "img.png", "query": "right", "targets": [{"polygons": [[20, 0, 30, 0, 30, 10, 20, 10]]}]},
        {"image": "img.png", "query": "nothing"},
    ])


def test_one_prediction_per_query_on_one_image(tmp_path: Path, capsys) -> None:
    from lisa.eval.evaluate import load_eval_dataset

    _jsonl_two_queries_per_image(tmp_path / "d")
    items = load_eval_dataset("jsonl", tmp_path / "d", "val")
    preds = tmp_path / "p"
    preds.mkdir()
    for item in items:
        Image.fromarray(item.target * 255).save(preds / prediction_name(item.item_id))
    assert sorted(p.name for p in preds.iterdir()) == ["q%3A1.png", "q%3A2.png", "q%3A3.png"]
    argv = ["--dataset", "jsonl", "--data-dir", str(tmp_path / "d"), "--pred-dir", str(preds)]
    assert _run(argv) == 0
    assert capsys.readouterr().out.strip() == "gIoU=1.0000 cIoU=1.0000 n=3"
    for path in preds.iterdir():
        path.unlink()
    Image.fromarray(items[0].target * 255).save(preds / "img.png")  # one file for an image with 3 queries
    with pytest.raises(LisaError, match="which has 3 queries; write one file per query instead, here q%3A1.png"):
        _run(argv)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lisa.model.build import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def _datasets(root: Path) -> dict[str, list[str]]:
    """Three dataset kinds, each with several queries on one image."""
    for k in range(2):
        write_reasonseg(root / "rs" / "val", f"i{k}", [f"thing {k}", f"other {k}"], k == 1,
                        [shape("target", square(2, 2, 20, 20))])
    _jsonl_two_queries_per_image(root / "js")
    refs = [{"ref_id": r, "ann_id": 10 + r, "image_id": 1, "category_id": 1, "split": "val",
             "sentences": [{"sent": f"box {r} a", "sent_id": 2 * r}, {"sent": f"box {r} b", "sent_id": 2 * r + 1}]}
            for r in range(2)]
    write_refer(root / "rc", refs=refs)
    return {"reasonseg": ["--data-dir", str(root / "rs"), "--all-texts"],
            "jsonl": ["--data-dir", str(root / "js")],
            "refcoco": ["--data-dir", str(root / "rc")]}


def test_save_predictions_then_pred_dir_gives_the_same_report(tmp_path: Path, tiny_model: Path) -> None:
    for dataset, data_args in _datasets(tmp_path / "data").items():
        saved, model_report, pred_report = tmp_path / f"{dataset}-p", tmp_path / f"{dataset}-m.json", tmp_path / f"{dataset}-r.json"
        common = ["--dataset", dataset, *data_args]
        assert _run([*common, "--model", str(tiny_model), "--device", "cpu", "--teacher-forced", "--batch-size", "3",
                     "--save-predictions", str(saved), "--out", str(model_report)]) == 0
        assert _run([*common, "--pred-dir", str(saved), "--out", str(pred_report)]) == 0
        first, second = json.loads(model_report.read_text()), json.loads(pred_report.read_text())
        assert first["n"] == len(list(saved.iterdir())) == {"reasonseg": 4, "jsonl": 3, "refcoco": 4}[dataset]
        for key in ("giou", "ciou", "n", "subsets", "sums", "no_target"):
            assert first[key] == second[key], (dataset, key)
        assert [s["iou"] for s in first["per_sample"]] == [s["iou"] for s in second["per_sample"]]
        assert 0 < first["sums"]["union"]  # something was predicted or targeted: not a vacuous match


def test_save_predictions_needs_a_model_and_a_free_folder(tmp_path: Path, tiny_model: Path) -> None:
    _jsonl_two_queries_per_image(tmp_path / "d")
    (tmp_path / "p").mkdir()
    with pytest.raises(LisaError, match="--save-predictions needs --model"):
        _run(["--dataset", "jsonl", "--data-dir", str(tmp_path / "d"), "--pred-dir", str(tmp_path / "p"),
              "--save-predictions", str(tmp_path / "s")])
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "old.png").write_bytes(b"x")
    with pytest.raises(LisaError, match="already holds files; pass --overwrite"):
        _run(["--dataset", "jsonl", "--data-dir", str(tmp_path / "d"), "--model", str(tiny_model),
              "--save-predictions", str(tmp_path / "s")])
    assert _run(["--dataset", "jsonl", "--data-dir", str(tmp_path / "d"), "--model", str(tiny_model), "--device", "cpu",
                 "--teacher-forced", "--save-predictions", str(tmp_path / "s"), "--overwrite"]) == 0
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["q%3A1.png", "q%3A2.png", "q%3A3.png"]
