"""Writers of tiny dataset files in the real on-disk formats, shared by the data/eval tests."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def write_image(path: Path, width: int, height: int, value: int = 100) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((height, width, 3), value, dtype=np.uint8)).save(path)
    return path


def square(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    """labelme points of an axis-aligned rectangle."""
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


def write_reasonseg(folder: Path, stem: str, texts: list[str], is_sentence: bool,
                    shapes: list[dict[str, Any]], size: tuple[int, int] = (40, 30)) -> None:
    """``folder/stem.jpg`` (width, height = size) + ``folder/stem.json``."""
    write_image(folder / f"{stem}.jpg", *size)
    anno = {"text": texts, "is_sentence": is_sentence, "shapes": shapes}
    (folder / f"{stem}.json").write_text(json.dumps(anno), encoding="utf-8")


def shape(label: str, points: list[list[float]]) -> dict[str, Any]:
    return {"label": label, "labels": [label], "shape_type": "polygon", "points": points}


def write_refer(root: Path, name: str = "refcoco", split_by: str = "unc", as_json: bool = False,
                refs: list[dict[str, Any]] | None = None) -> None:
    """root/refer_seg/<name>/refs(<split_by>).p|.json + instances.json + two 40x30 images."""
    folder = root / "refer_seg" / name
    folder.mkdir(parents=True, exist_ok=True)
    images = [{"id": 1, "file_name": "COCO_train2014_1.jpg", "height": 30, "width": 40},
              {"id": 2, "file_name": "COCO_train2014_2.jpg", "height": 30, "width": 40}]
    annotations = [
        {"id": 10, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 10, 0, 10, 10, 0, 10]]},
        {"id": 11, "image_id": 1, "category_id": 1, "segmentation": [[20, 20, 30, 20, 30, 29, 20, 29]]},
        {"id": 12, "image_id": 2, "category_id": 1,
         "segmentation": {"size": [30, 40], "counts": _rle_counts(30, 40)}},
    ]
    (folder / "instances.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}))
    if refs is None:
        refs = [
            {"ref_id": 0, "ann_id": 10, "image_id": 1, "category_id": 1, "split": "train",
             "sentences": [{"sent": "Left Box", "sent_id": 0}, {"sent": "top left", "sent_id": 1}]},
            {"ref_id": 1, "ann_id": 11, "image_id": 1, "category_id": 1, "split": "val",
             "sentences": [{"sent": " Right box ", "sent_id": 2}]},
            {"ref_id": 2, "ann_id": 12, "image_id": 2, "category_id": 1, "split": "testA",
             "sentences": [{"sent": "the blob", "sent_id": 3}]},
            {"ref_id": 3, "ann_id": 12, "image_id": 2, "category_id": 1, "split": "testB",
             "sentences": [{"sent": "the other blob", "sent_id": 4}]},
        ]
    stem = f"{'grefs' if name == 'grefcoco' else 'refs'}({split_by})"
    if as_json:
        (folder / f"{stem}.json").write_text(json.dumps(refs))
    else:
        (folder / f"{stem}.p").write_bytes(pickle.dumps(refs, protocol=2))
    sub = "images/saiapr_tc-12" if name == "refclef" else "images/mscoco/images/train2014"
    for im in images:
        write_image(root / "refer_seg" / sub / im["file_name"], 40, 30)


def _rle_counts(height: int, width: int) -> str:
    from pycocotools import mask as coco_mask

    m = np.zeros((height, width), dtype=np.uint8, order="F")
    m[5:15, 5:25] = 1
    return coco_mask.encode(np.asfortranarray(m))["counts"].decode()


def write_jsonl(path: Path, records: list[Any]) -> Path:
    """One JSON value per line (strings are written raw, to make broken lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
