"""Prediction mask files: the naming rule shared by ``lisa eval --save-predictions`` (writes) and
``lisa eval --pred-dir`` (reads), so that one scores what the other wrote to the same figures.

Naming (docs/data-format.md, "Scoring your own predictions"):

* one file per query: ``<item id>.png`` with every character outside ``A-Z a-z 0-9 _ . - ~``
  percent-encoded (``urllib.parse.quote(item_id, safe="")``), e.g. the JSONL record on line 3 of
  ``referring.jsonl`` (id ``referring:3``) -> ``referring%3A3.png``; ReasonSeg ``img7`` ->
  ``img7.png``; refCOCO ref 12, sentence 40 -> ``12_40.png``;
* one file per image: ``<image stem>.png`` is accepted too, but only for an image with a single
  query in the dataset (with several queries the file would be scored against every one of them).

Reading (``read_prediction``): nonzero colour / luminance = foreground, of the image's size; alpha is
not the mask (see ``lisa.data.validate.mask_foreground``).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Sequence
from urllib.parse import quote

import numpy as np
from PIL import Image

from lisa.data.sample import EvalItem
from lisa.data.validate import RecordError, read_mask_file
from lisa.errors import LisaError

Prediction = tuple[np.ndarray, str | None]  # ([H, W] bool mask, answer text or None)


def prediction_name(item_id: str) -> str:
    """The one-file-per-query name of an item's prediction."""
    return quote(str(item_id), safe="") + ".png"


def image_stem(item: EvalItem) -> str:
    """The one-file-per-image stem of an item: the image's stem (ReasonSeg: its annotation stem)."""
    return str(item.meta.get("stem") or Path(item.image).stem)


def dataset_keys(dataset: Sequence[EvalItem]) -> list[tuple[str, Path]]:
    """(item id, image) of every item, without building targets (datasets expose ``keys()``)."""
    keys = getattr(dataset, "keys", None)
    if keys is None:
        return [(item.item_id, Path(item.image)) for item in dataset]
    return keys()


def check_unique_ids(keys: list[tuple[str, Path]]) -> None:
    """Prediction files are named by item id: two items with one id would share a file."""
    counts = Counter(prediction_name(item_id) for item_id, _ in keys)
    clashes = sorted(name for name, count in counts.items() if count > 1)
    if clashes:
        raise LisaError(f"{len(clashes)} prediction file name(s) are shared by several items (e.g. {clashes[0]}); "
                        "give every JSONL record a unique 'id' so that each query has its own prediction file")


def read_prediction(path: Path, item: EvalItem) -> np.ndarray:
    """A prediction PNG -> [H, W] bool, checked to be an image of the target's size."""
    height, width = item.target.shape
    try:
        return read_mask_file(path, height, width, what="prediction")
    except RecordError as error:
        raise LisaError(f"{error} (item {item.item_id})") from None


class PredDirPredictor:
    """Reads ``pred_dir/<quoted item id>.png``, else ``pred_dir/<image stem>.png`` for an image that
    has a single query in ``dataset``; anything else is an error naming the expected file."""

    def __init__(self, pred_dir: Path, dataset: Sequence[EvalItem] | None = None) -> None:
        self.pred_dir = Path(pred_dir)
        if not self.pred_dir.is_dir():
            raise LisaError(f"prediction folder {self.pred_dir} does not exist; expected one <item id>.png per "
                            "query (or <image stem>.png per single-query image)")
        self.queries_per_image: Counter | None = None
        if dataset is not None:
            keys = dataset_keys(dataset)
            check_unique_ids(keys)
            self.queries_per_image = Counter(str(image) for _, image in keys)

    def path_for(self, item: EvalItem) -> Path:
        per_query = self.pred_dir / prediction_name(item.item_id)
        if per_query.is_file():
            return per_query
        per_image = self.pred_dir / f"{image_stem(item)}.png"
        if per_image.is_file():
            n = self.queries_per_image[str(item.image)] if self.queries_per_image is not None else 1
            if n > 1:
                raise LisaError(f"{per_image} is one prediction for image {Path(item.image).name}, which has {n} "
                                f"queries; write one file per query instead, here {per_query.name}")
            return per_image
        raise LisaError(f"prediction {per_query} not found for item {item.item_id} (nor {per_image.name}); "
                        "expected one <item id>.png per query, see docs/data-format.md")

    def __call__(self, items: list[EvalItem]) -> list[Prediction]:
        return [(read_prediction(self.path_for(item), item), None) for item in items]


def save_prediction(folder: Path, item: EvalItem, mask: np.ndarray) -> Path:
    """Write one predicted mask as an 8-bit PNG (0 / 255) named by the per-query rule."""
    path = Path(folder) / prediction_name(item.item_id)
    Image.fromarray(np.asarray(mask, dtype=bool).astype(np.uint8) * 255).save(path)  # mode L
    return path
