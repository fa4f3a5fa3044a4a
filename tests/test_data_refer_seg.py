"""refCOCO-family and gRefCOCO loaders; the restricted unpickler."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
from _data_writers import write_refer

from lisa.data import safe_pickle
from lisa.data.refer_seg import ReferEval, ReferTrain, split_matches
from lisa.errors import LisaError


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_builds_plain_data_and_refuses_globals(tmp_path: Path) -> None:
    data = [{"a": (1, 2.5, None, True), "s": {1, 2}, "b": b"x", "u": "caf\xe9"}]
    for protocol in (0, 2, 4):
        assert safe_pickle.loads(pickle.dumps(data, protocol=protocol)) == data
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps([_Evil()], protocol=2))
    with pytest.raises(LisaError, match=r"refs\(unc\)\.p.*refusing to load posix\.system|refusing to load os\.system"):
        safe_pickle.load(path)


def test_split_semantics() -> None:
    assert split_matches("testA", "testA") and split_matches("testAB", "testB")
    assert split_matches("testB", "test") and not split_matches("testB", "testA")
    assert split_matches("val", "val") and not split_matches("train", "val")


@pytest.mark.parametrize("as_json", [False, True])
def test_eval_items_from_pickle_or_json(tmp_path: Path, as_json: bool) -> None:
    write_refer(tmp_path, as_json=as_json)
    items = ReferEval(tmp_path, "refcoco", "val")
    assert len(items) == 1
    item = items[0]
    assert item.query == "What is right box in this image? Please output segmentation mask."
    assert item.target.shape == (30, 40) and item.target[25, 25] == 1 and item.target[0, 0] == 0
    assert item.image.name == "COCO_train2014_1.jpg" and item.image.is_file()
    test_items = ReferEval(tmp_path, "refcoco", "test")
    assert len(test_items) == 2 and test_items[0].target[10, 10] == 1  # RLE segmentation


def test_layout_without_refer_seg_level(tmp_path: Path) -> None:
    write_refer(tmp_path)
    (tmp_path / "refer_seg").rename(tmp_path / "flat")
    assert len(ReferEval(tmp_path / "flat", "refcoco", "testA")) == 1


def test_missing_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(LisaError, match="refcoco annotations folder not found"):
        ReferEval(tmp_path, "refcoco", "val")
    write_refer(tmp_path, name="refcocog", split_by="umd")
    (tmp_path / "refer_seg" / "refcocog" / "instances.json").unlink()
    with pytest.raises(LisaError, match="instances.json not found"):
        ReferEval(tmp_path, "refcocog", "val")
    with pytest.raises(LisaError, match=r"refs\(unc\)\.p"):
        ReferEval(tmp_path, "refcocog", "val", split_by="unc")


def test_training_samples(tmp_path: Path) -> None:
    write_refer(tmp_path, name="refclef")
    data = ReferTrain(tmp_path, "refclef", "train")
    assert len(data) == 1
    sample = data.sample(0, random.Random(0))
    assert len(sample.conversations) == 2 and sample.image.parent.name == "saiapr_tc-12"
    questions = [c.turns[0][0] for c in sample.conversations]
    assert any("left box" in q for q in questions)  # lower-cased
    assert all(c.masks.shape == (1, 30, 40) and c.masks[0, 5, 5] == 1 for c in sample.conversations)


def test_grefcoco_union_and_no_target(tmp_path: Path) -> None:
    refs = [
        {"ref_id": 0, "ann_id": [10, 11], "image_id": 1, "category_id": 1, "split": "val",
         "sentences": [{"sent": "both boxes", "sent_id": 0}]},
        {"ref_id": 1, "ann_id": [-1], "image_id": 1, "category_id": 0, "split": "val",
         "sentences": [{"sent": "the dog", "sent_id": 1}]},
    ]
    write_refer(tmp_path, name="grefcoco", refs=refs)
    items = ReferEval(tmp_path, "grefcoco", "val")
    assert items[0].target[5, 5] == 1 and items[0].target[25, 25] == 1
    assert not items[1].target.any() and items[1].meta["no_target"]
    data = ReferTrain(tmp_path, "grefcoco", "val", no_target_text=True)
    convs = {c.turns[0][0]: c for c in data.sample(0, random.Random(0)).conversations}
    no_target = next(c for q, c in convs.items() if "the dog" in q)
    assert no_target.masks.shape[0] == 0 and "[SEG]" not in no_target.turns[0][1]
    official = ReferTrain(tmp_path, "grefcoco", "val")
    for conv in official.sample(0, random.Random(0)).conversations:
        assert conv.masks.shape[0] == 1
    assert np.array_equal(items[0].target, items[0].target.astype(bool).astype(np.uint8))
