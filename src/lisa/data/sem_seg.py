"""Semantic and part segmentation training sets (the official ``utils/sem_seg_dataset.py``).

Label-map datasets (one PNG of class ids per image; 255 = ignore)::

    ade20k:    DIR/ade20k/images/training/X.jpg + DIR/ade20k/annotations/training/X.png
               (ADEChallengeData2016; remap 0 -> 255, k -> k - 1: 150 classes)
    cocostuff: DIR/cocostuff/train2017/X.png + DIR/coco/train2017/X.jpg
               (stuffthingmaps; the 28 names with "-" are ignored)
    mapillary: DIR/mapillary/training/v2.0/labels/X.png + DIR/mapillary/training/images/X.jpg
               (names = lower-cased ``readable`` of DIR/mapillary/config_v2.0.json)

Instance part datasets (COCO format, one mask per sampled instance)::

    paco_lvis:   DIR/vlpart/paco/annotations/paco_lvis_v1_train.json, images DIR/coco/<file_name>
    pascal_part: DIR/vlpart/pascal_part/train.json,
                 images DIR/vlpart/pascal_part/VOCdevkit/VOC2010/JPEGImages/<file_name>
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from lisa.data import templates
from lisa.data.class_names import ADE20K_CLASSES, COCOSTUFF_CLASSES
from lisa.data.polygons import segmentation_mask
from lisa.data.validate import RecordError
from lisa.data.sample import Conversation, Sample
from lisa.errors import LisaError

IGNORE = 255
LABEL_MAP_DATASETS = ("ade20k", "cocostuff", "mapillary")
PART_DATASETS = ("paco_lvis", "pascal_part")


def _require_dir(path: Path, layout: str) -> Path:
    if not path.is_dir():
        raise LisaError(f"{path} not found; expected {layout}")
    return path


def _pairs(label_dir: Path, image_dir: Path, layout: str) -> list[tuple[Path, Path]]:
    """(image, label) pairs for every label PNG; a label without its ``.jpg`` is an error."""
    labels = sorted(_require_dir(label_dir, layout).glob("*.png"))
    _require_dir(image_dir, layout)
    if not labels:
        raise LisaError(f"{label_dir} holds no *.png label maps; expected {layout}")
    pairs = []
    for label in labels:
        image = image_dir / f"{label.stem}.jpg"
        if not image.is_file():
            raise LisaError(f"label map {label} has no image {image}; expected {layout}")
        pairs.append((image, label))
    return pairs


def ade20k_remap(label: np.ndarray) -> np.ndarray:
    """ADEChallenge ids (0 = other, 1..150) -> 0..149 with 255 ignore. [H, W] uint8."""
    out = label.astype(np.int32) - 1
    out[(label == 0) | (out >= 254)] = IGNORE
    return out.astype(np.uint8)


def cocostuff_remap(label: np.ndarray) -> np.ndarray:
    """Hyphenated COCO-Stuff classes ("wall-other", ...) -> 255. [H, W] uint8."""
    out = label.copy()
    for class_id, name in enumerate(COCOSTUFF_CLASSES):
        if "-" in name:
            out[label == class_id] = IGNORE
    return out


def mapillary_classes(config_path: Path) -> list[str]:
    """Lower-cased ``readable`` names from Mapillary's ``config_v2.0.json``."""
    if not config_path.is_file():
        raise LisaError(f"{config_path} not found; Mapillary Vistas v2.0 ships it at mapillary/config_v2.0.json")
    config = json.loads(config_path.read_text(encoding="utf-8"))
    return [str(label["readable"]).lower() for label in config["labels"]]


class LabelMapSegmentation:
    """ADE20K / COCO-Stuff / Mapillary: up to ``max_queries`` distinct classes per image.

    ``sample`` returns None for an image with no valid class (the mixture redraws).
    """

    def __init__(self, data_dir: Path, name: str, max_queries: int = 3) -> None:
        data_dir = Path(data_dir)
        self.source = name
        self.max_queries = max_queries
        self.remap: Callable[[np.ndarray], np.ndarray] = lambda label: label
        if name == "ade20k":
            layout = "ade20k/images/training/X.jpg and ade20k/annotations/training/X.png"
            self.pairs = _pairs(data_dir / "ade20k/annotations/training", data_dir / "ade20k/images/training", layout)
            self.classes: Sequence[str] = ADE20K_CLASSES
            self.remap = ade20k_remap
        elif name == "cocostuff":
            layout = "cocostuff/train2017/X.png and coco/train2017/X.jpg"
            self.pairs = _pairs(data_dir / "cocostuff/train2017", data_dir / "coco/train2017", layout)
            self.classes = COCOSTUFF_CLASSES
            self.remap = cocostuff_remap
        elif name == "mapillary":
            layout = "mapillary/training/v2.0/labels/X.png and mapillary/training/images/X.jpg"
            self.classes = mapillary_classes(data_dir / "mapillary/config_v2.0.json")
            self.pairs = _pairs(data_dir / "mapillary/training/v2.0/labels",
                                data_dir / "mapillary/training/images", layout)
        else:
            raise LisaError(f"unknown label-map dataset {name!r}; choose from {', '.join(LABEL_MAP_DATASETS)}")

    def __len__(self) -> int:
        return len(self.pairs)

    def label(self, index: int) -> np.ndarray:
        """The remapped label map of image ``index``, [H, W] uint8 (255 = ignore)."""
        return self.remap(np.array(Image.open(self.pairs[index][1])))

    def sample(self, index: int, rng: random.Random) -> Sample | None:
        label = self.label(index)
        ids = [int(i) for i in np.unique(label) if i != IGNORE and i < len(self.classes)]
        if not ids:
            return None
        conversations = []
        for class_id in rng.sample(ids, min(self.max_queries, len(ids))):
            mask = (label == class_id).astype(np.uint8)[None]  # [1, H, W]
            turn = (templates.short_question(self.classes[class_id], rng), templates.answer(rng))
            conversations.append(Conversation([turn], mask))
        return Sample(self.pairs[index][0], conversations, self.source, {"label": str(self.pairs[index][1])})


def part_name(category: str) -> str | tuple[str, str]:
    """"object:part" -> (object, part); "object" -> object; "_(" suffixes cut, underscores kept."""
    pieces = category.strip().split(":")
    if len(pieces) == 1:
        return pieces[0].split("_(")[0]
    if len(pieces) != 2:
        raise LisaError(f"category name {category!r} has more than one ':'")
    return pieces[0].split("_(")[0], pieces[1].split("_(")[0]


def part_phrase(name: str | tuple[str, str], rng: random.Random) -> str:
    """(object, part) -> "object part" or "the part of the object" (50/50)."""
    if isinstance(name, str):
        return name
    obj, part = name
    return f"{obj} {part}" if rng.random() < 0.5 else f"the {part} of the {obj}"


class PartSegmentation:
    """PACO-LVIS / PASCAL-Part: up to ``max_queries`` annotation instances per image."""

    def __init__(self, data_dir: Path, name: str, max_queries: int = 3) -> None:
        data_dir = Path(data_dir)
        if name == "paco_lvis":
            anno_path = data_dir / "vlpart/paco/annotations/paco_lvis_v1_train.json"
            self.image_dir = data_dir / "coco"
        elif name == "pascal_part":
            anno_path = data_dir / "vlpart/pascal_part/train.json"
            self.image_dir = data_dir / "vlpart/pascal_part/VOCdevkit/VOC2010/JPEGImages"
        else:
            raise LisaError(f"unknown part dataset {name!r}; choose from {', '.join(PART_DATASETS)}")
        if not anno_path.is_file():
            raise LisaError(f"{anno_path} not found; expected a COCO-format {name} annotation file there")
        _require_dir(self.image_dir, f"{name} images under {self.image_dir}")
        coco = json.loads(anno_path.read_text(encoding="utf-8"))
        self.source = name
        self.max_queries = max_queries
        self.names = {int(c["id"]): part_name(str(c["name"])) for c in coco["categories"]}
        self.images = {int(im["id"]): im for im in coco["images"]}
        self.anns: dict[int, list[dict[str, Any]]] = {}
        for ann in coco["annotations"]:
            self.anns.setdefault(int(ann["image_id"]), []).append(ann)
        self.image_ids = sorted(self.images)

    def __len__(self) -> int:
        return len(self.image_ids)

    def sample(self, index: int, rng: random.Random) -> Sample | None:
        image_id = self.image_ids[index]
        anns = self.anns.get(image_id, [])
        if not anns:
            return None
        info = self.images[image_id]
        height, width = int(info["height"]), int(info["width"])
        conversations = []
        for ann in rng.sample(anns, min(self.max_queries, len(anns))):
            try:
                mask = segmentation_mask(ann["segmentation"], height, width)[None]  # [1, H, W]
            except RecordError as error:
                raise LisaError(f"{self.source} annotation {ann.get('id')}: {error}") from None
            phrase = part_phrase(self.names[int(ann["category_id"])], rng)
            conversations.append(Conversation([(templates.short_question(phrase, rng), templates.answer(rng))], mask))
        return Sample(self.image_dir / str(info["file_name"]), conversations, self.source, {"image_id": image_id})


def semantic_dataset(data_dir: Path, name: str, max_queries: int = 3) -> LabelMapSegmentation | PartSegmentation:
    """Build one of ade20k, cocostuff, mapillary, paco_lvis, pascal_part by name."""
    if name in PART_DATASETS:
        return PartSegmentation(data_dir, name, max_queries)
    return LabelMapSegmentation(data_dir, name, max_queries)
