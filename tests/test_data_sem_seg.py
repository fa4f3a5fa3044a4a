"""Semantic / part segmentation loaders on tiny files in the real layouts (as the official utils/sem_seg_dataset.py reads them)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from _data_writers import write_image
from PIL import Image

from lisa.data.class_names import ADE20K_CLASSES, COCOSTUFF_CLASSES
from lisa.data.sem_seg import ade20k_remap, cocostuff_remap, part_name, semantic_dataset
from lisa.errors import LisaError


def _label(path: Path, label: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label.astype(np.uint8)).save(path)


def test_class_lists_and_remaps() -> None:
    assert len(ADE20K_CLASSES) == 150 and ADE20K_CLASSES[:3] == ("wall", "building", "sky")
    assert len(COCOSTUFF_CLASSES) == 182 and COCOSTUFF_CLASSES[0] == "person"
    assert sum("-" in n for n in COCOSTUFF_CLASSES) == 28
    np.testing.assert_array_equal(ade20k_remap(np.array([0, 1, 150, 255], np.uint8)), [255, 0, 149, 255])
    wall_other = COCOSTUFF_CLASSES.index("wall-other")
    np.testing.assert_array_equal(cocostuff_remap(np.array([0, wall_other, 255], np.uint8)), [0, 255, 255])


def test_ade20k_samples_classes_by_name(tmp_path: Path) -> None:
    label = np.zeros((10, 12), np.uint8)  # 0 = "other" -> ignored
    label[:5] = 3  # sky after the remap
    label[5:, :6] = 1  # wall
    _label(tmp_path / "ade20k/annotations/training/ADE_1.png", label)
    write_image(tmp_path / "ade20k/images/training/ADE_1.jpg", 12, 10)
    data = semantic_dataset(tmp_path, "ade20k")
    sample = data.sample(0, random.Random(0))
    assert len(sample.conversations) == 2
    for conv in sample.conversations:
        question = conv.turns[0][0]
        name = "sky" if "sky" in question else "wall"
        expected = (label == (3 if name == "sky" else 1)).astype(np.uint8)
        np.testing.assert_array_equal(conv.masks[0], expected)


def test_cocostuff_image_without_valid_class_returns_none(tmp_path: Path) -> None:
    _label(tmp_path / "cocostuff/train2017/000.png", np.full((4, 4), COCOSTUFF_CLASSES.index("floor-wood")))
    write_image(tmp_path / "coco/train2017/000.jpg", 4, 4)
    assert semantic_dataset(tmp_path, "cocostuff").sample(0, random.Random(0)) is None


def test_mapillary_names_and_missing_image(tmp_path: Path) -> None:
    config = {"labels": [{"readable": "Bird", "name": "animal--bird"}, {"readable": "Road", "name": "construction--flat--road"}]}
    (tmp_path / "mapillary").mkdir()
    (tmp_path / "mapillary/config_v2.0.json").write_text(json.dumps(config))
    _label(tmp_path / "mapillary/training/v2.0/labels/m.png", np.ones((4, 4)))
    (tmp_path / "mapillary/training/images").mkdir(parents=True)
    with pytest.raises(LisaError, match=r"m\.png has no image .*m\.jpg"):
        semantic_dataset(tmp_path, "mapillary")
    write_image(tmp_path / "mapillary/training/images/m.jpg", 4, 4)
    sample = semantic_dataset(tmp_path, "mapillary").sample(0, random.Random(0))
    assert "road" in sample.conversations[0].turns[0][0]


def test_missing_dataset_folder_names_layout(tmp_path: Path) -> None:
    with pytest.raises(LisaError, match="ade20k/annotations/training not found; expected"):
        semantic_dataset(tmp_path, "ade20k")


def test_part_names_and_pascal_part_instances(tmp_path: Path) -> None:
    assert part_name("dog:leg_(animal)") == ("dog", "leg")
    assert part_name("chair_(furniture)") == "chair" and part_name("car:side_view_mirror")[1] == "side_view_mirror"
    coco = {
        "images": [{"id": 1, "file_name": "2008_000001.jpg", "height": 10, "width": 10}],
        "annotations": [{"id": 5, "image_id": 1, "category_id": 7, "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]]}],
        "categories": [{"id": 7, "name": "dog:head"}],
    }
    (tmp_path / "vlpart/pascal_part").mkdir(parents=True)
    (tmp_path / "vlpart/pascal_part/train.json").write_text(json.dumps(coco))
    write_image(tmp_path / "vlpart/pascal_part/VOCdevkit/VOC2010/JPEGImages/2008_000001.jpg", 10, 10)
    data = semantic_dataset(tmp_path, "pascal_part")
    questions = {data.sample(0, random.Random(s)).conversations[0].turns[0][0] for s in range(20)}
    assert any("dog head" in q for q in questions) and any("the head of the dog" in q for q in questions)
    assert data.sample(0, random.Random(0)).conversations[0].masks[0].sum() == 16
