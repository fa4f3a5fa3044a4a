"""Users' JSONL folder format: loader, templates, mask kinds and `lisa data check`."""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
import pytest
from _data_writers import write_image, write_jsonl
from PIL import Image
from pycocotools import mask as coco_mask

from lisa.data import commands
from lisa.data.jsonl import JsonlEval, JsonlTrain
from lisa.errors import LisaError


def _folder(root: Path) -> Path:
    write_image(root / "img.jpg", 20, 10)
    mask = np.zeros((10, 20), np.uint8)
    mask[0:5, 0:5] = 200
    (root / "masks").mkdir(parents=True)
    Image.fromarray(mask).save(root / "masks" / "m0.png")
    rle = coco_mask.encode(np.asfortranarray((np.arange(200).reshape(10, 20) % 20 >= 15).astype(np.uint8)))
    write_jsonl(root / "data.jsonl", [
        {"image": "img.jpg", "query": "the Square", "targets": [{"mask": "masks/m0.png"}]},
        {"image": "img.jpg", "query": "Find the shape that is on the right.", "is_sentence": True,
         "targets": [{"rle": {"size": [10, 20], "counts": rle["counts"].decode()}}]},
        {"image": "img.jpg", "query": "both", "answer": "Left [SEG] and right [SEG].",
         "targets": [{"mask": "masks/m0.png"}, {"polygons": [[15, 0, 19, 0, 19, 9, 15, 9]]}]},
        {"image": "img.jpg", "query": "the purple elephant"},
        {"image": "img.jpg", "query": "What colour is the square?", "answer": "It is grey."},
    ])
    return root


def test_eval_items(tmp_path: Path) -> None:
    items = JsonlEval(_folder(tmp_path / "d"))
    assert len(items) == 4 and items.skipped_text_only == 1
    assert items[0].query == "What is the Square in this image? Please output segmentation mask."
    assert items[1].query == "Find the shape that is on the right. Please output segmentation mask."
    assert items[0].target[:5, :5].all() and items[0].target.sum() == 25
    assert items[1].target[:, 15:].all() and items[1].target.sum() == 50
    assert items[2].target.sum() == 25 + 4 * 9  # union; COCO polygons cover x in [15, 19), y in [0, 9)
    assert not items[3].target.any()  # no-target
    assert items[0].item_id == "data:1"


def test_training_samples_by_kind(tmp_path: Path) -> None:
    data = JsonlTrain(_folder(tmp_path / "d"), max_queries=10)
    assert len(data) == 2  # one image group + one text-only record
    by_query = {}
    for index in range(len(data)):
        for conv in data.sample(index, random.Random(0)).conversations:
            by_query[conv.turns[0][0]] = conv
    vqa = by_query["What colour is the square?"]
    assert vqa.turns[0][1] == "It is grey." and vqa.masks.shape == (0, 10, 20)
    two = next(c for q, c in by_query.items() if "both" in q)
    assert two.turns[0][1] == "Left [SEG] and right [SEG]." and two.masks.shape == (2, 10, 20)
    none = next(c for q, c in by_query.items() if "elephant" in q)
    assert none.turns[0][1] == "There is no such object in the image." and none.masks.shape[0] == 0
    square = next(c for q, c in by_query.items() if "the square in this image" in q)  # short template, lower-cased
    assert square.turns[0][1].count("[SEG]") == 1 and square.masks.shape == (1, 10, 20)


def test_no_target_as_empty_mask_answers_with_an_empty_mask(tmp_path: Path) -> None:
    """The option turns only the no-target record into a mask answer whose mask is all background;
    the other records are sampled exactly as without it."""
    folder = _folder(tmp_path / "d")
    plain, empty = JsonlTrain(folder, max_queries=10), JsonlTrain(folder, max_queries=10, no_target_as_empty_mask=True)
    got = {c.turns[0][0]: c for i in range(len(empty)) for c in empty.sample(i, random.Random(i)).conversations}
    want = {c.turns[0][0]: c for i in range(len(plain)) for c in plain.sample(i, random.Random(i)).conversations}
    none = next(c for q, c in got.items() if "elephant" in q)
    assert none.turns[0][1].count("[SEG]") == 1 and "no such object" not in none.turns[0][1]
    assert none.masks.shape == (1, 10, 20) and not none.masks.any()
    assert got.keys() == want.keys()
    for query in (q for q in got if "elephant" not in q):
        assert got[query].turns == want[query].turns and np.array_equal(got[query].masks, want[query].masks)


def test_no_target_as_empty_mask_reaches_the_loader_from_a_config(tmp_path: Path) -> None:
    from lisa.train.config import config_from_dict
    from lisa.train.data import build_group

    folder = _folder(tmp_path / "d")
    config = config_from_dict({"run_dir": str(tmp_path / "run"), "model": {"base": "lisa-tiny"},
                               "data": [{"type": "jsonl", "dir": str(folder), "split": "",
                                         "no_target_as_empty_mask": True}]})
    (loader,) = build_group(config.data[0], config)
    assert isinstance(loader, JsonlTrain) and loader.no_target_as_empty_mask


def test_split_subfolder_and_errors(tmp_path: Path) -> None:
    _folder(tmp_path / "d" / "val")
    assert len(JsonlEval(tmp_path / "d", "val")) == 4
    with pytest.raises(LisaError, match="holds no \\*.jsonl"):
        JsonlEval(tmp_path / "d")
    write_jsonl(tmp_path / "bad" / "x.jsonl", [{"image": "a.jpg"}])
    with pytest.raises(LisaError, match=r"x\.jsonl:1: 'query' is required"):
        JsonlEval(tmp_path / "bad")


def _check(folder: Path, capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    args = parser.parse_args(["data", "check", str(folder)])
    code = args.run(args)
    return code, capsys.readouterr().out.strip().splitlines()


def test_check_accepts_a_good_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code, lines = _check(_folder(tmp_path / "d"), capsys)
    assert code == 0, lines
    assert lines == ["1 file(s): 1 no_target, 3 segmentation, 1 text_only; 0 error(s), 0 warning(s)"]


def test_check_reports_every_problem_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    root = _folder(tmp_path / "d")
    Image.fromarray(np.zeros((3, 3), np.uint8)).save(root / "masks" / "small.png")
    write_jsonl(root / "broken.jsonl", [
        {"image": "img.jpg", "query": "ok", "targets": [{"polygons": [[0, 0, 5, 0, 5, 5]]}]},
        "{not json",
        {"image": "missing.jpg", "query": "x", "targets": [{"polygons": [[0, 0, 5, 0, 5, 5]]}]},
        {"image": "img.jpg", "query": "x", "targets": [{"mask": "masks/small.png"}]},
        {"image": "img.jpg", "query": "x", "answer": "[SEG] [SEG] [SEG]",
         "targets": [{"mask": "masks/m0.png"}, {"mask": "masks/m0.png"}]},
        {"image": "img.jpg", "query": "x", "targets": [{"polygons": [[1, 2]]}]},
        {"image": "img.jpg", "query": "x", "answer": "[SEG]"},
        {"image": "img.jpg", "query": "x", "targets": [{"mask": "masks/none.png"}], "colour": 1},
    ])
    code, lines = _check(root, capsys)
    assert code == 1
    problems = [line for line in lines if "broken.jsonl" in line]
    lines_reported = [int(p.split(":")[1]) for p in problems]
    assert lines_reported == [2, 3, 4, 5, 6, 7, 8, 8], problems
    text = "\n".join(problems)
    for expected in ("not valid JSON", "missing.jpg not found", "small.png is 3x3 but the image is 20x10",
                     "3 [SEG] for 2 targets", "at least 3 points", "no targets", "none.png not found",
                     "warning: unknown key 'colour'"):
        assert expected in text
    assert "7 error(s), 1 warning(s)" in lines[-1]
