"""refCOCO, refCOCO+, refCOCOg, refCLEF and gRefCOCO (the official ``utils/refer.py``, ``utils/grefer.py``, ``utils/refer_seg_dataset.py``).

Layout (``DIR`` = the data dir; the ``refer_seg/`` level is optional, because the official
training and validation code disagree on it)::

    DIR/[refer_seg/]<dataset>/refs(<splitBy>).p | refs(<splitBy>).json   (grefcoco: grefs(unc).*)
    DIR/[refer_seg/]<dataset>/instances.json
    DIR/[refer_seg/]images/mscoco/images/train2014/<COCO file name>
    DIR/[refer_seg/]images/saiapr_tc-12/<file name>                      (refclef)

A ``.json`` refs file (same content as the pickle) is preferred; the pickle is read with the
restricted unpickler. gRefCOCO ``ann_id`` is a list (``[-1]`` = no target); masks are the union
of the listed annotations.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from lisa.data import safe_pickle, templates
from lisa.data.polygons import segmentation_mask
from lisa.data.names import REFER_DATASETS
from lisa.data.sample import Conversation, EvalItem, Sample
from lisa.data.validate import RecordError, check_size
from lisa.errors import LisaError
SPLITS = ("train", "val", "testA", "testB", "testC", "test")


def default_split_by(name: str) -> str:
    """``umd`` for refcocog, ``unc`` for the others (as the official loaders)."""
    return "umd" if name == "refcocog" else "unc"


def _first_dir(candidates: list[Path], what: str) -> Path:
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise LisaError(f"{what} not found; looked for " + " or ".join(str(c) for c in candidates))


def refs_file(folder: Path, name: str, split_by: str) -> Path:
    """``refs(<splitBy>).json`` if present, else ``.p`` (``grefs`` for grefcoco)."""
    stem = f"{'grefs' if name == 'grefcoco' else 'refs'}({split_by})"
    for suffix in (".json", ".p"):
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    raise LisaError(f"{folder / (stem + '.p')} (or {stem}.json) not found; expected "
                    f"DIR/[refer_seg/]{name}/{stem}.p and instances.json")


def load_refs(path: Path) -> list[dict[str, Any]]:
    """The list of refs from a JSON or (restricted) pickle file."""
    refs = json.loads(path.read_text(encoding="utf-8")) if path.suffix == ".json" else safe_pickle.load(path)
    if not isinstance(refs, list) or not all(isinstance(r, dict) for r in refs):
        raise LisaError(f"{path}: expected a list of ref dicts")
    return refs


def split_matches(ref_split: str, split: str) -> bool:
    """``getRefIds`` semantics: testA/B/C by letter ("testAB" counts for A), ``test`` = any test."""
    if split in ("testA", "testB", "testC"):
        return "test" in ref_split and split[-1] in ref_split[4:]
    if split == "test":
        return "test" in ref_split
    return ref_split == split


def ref_ann_ids(ref: dict[str, Any]) -> list[int]:
    """Annotation ids of a ref; an empty list for a no-target expression (gRefCOCO ``[-1]``)."""
    ann = ref["ann_id"]
    ids = [int(a) for a in ann] if isinstance(ann, (list, tuple)) else [int(ann)]
    return [a for a in ids if a != -1]


@dataclass(frozen=True)
class Expression:
    """One referring sentence and the annotations it names (empty = no target)."""

    image_id: int
    sentence: str
    ann_ids: tuple[int, ...]
    item_id: str


class ReferData:
    """One referring dataset split loaded from disk: images, annotations and expressions."""

    def __init__(self, data_dir: Path, name: str, split: str, split_by: str | None = None) -> None:
        if name not in REFER_DATASETS:
            raise LisaError(f"unknown referring dataset {name!r}; choose from {', '.join(REFER_DATASETS)}")
        if split not in SPLITS:
            raise LisaError(f"unknown split {split!r}; choose from {', '.join(SPLITS)}")
        data_dir = Path(data_dir)
        self.name = name
        folder = _first_dir([data_dir / "refer_seg" / name, data_dir / name], f"{name} annotations folder")
        refs = load_refs(refs_file(folder, name, split_by or default_split_by(name)))
        instances_path = folder / "instances.json"
        if not instances_path.is_file():
            raise LisaError(f"{instances_path} not found; expected COCO-style images/annotations next to the refs file")
        instances = json.loads(instances_path.read_text(encoding="utf-8"))
        self.images = {int(im["id"]): im for im in instances["images"]}
        self.annotations = {int(a["id"]): a for a in instances["annotations"]}
        sub = Path("images/saiapr_tc-12") if name == "refclef" else Path("images/mscoco/images/train2014")
        self.image_dir = _first_dir([data_dir / "refer_seg" / sub, data_dir / sub], f"{name} image folder")
        self.expressions = self._expressions([r for r in refs if split_matches(str(r["split"]), split)])
        if not self.expressions:
            raise LisaError(f"{name} has no expressions in split {split!r}")

    def _expressions(self, refs: list[dict[str, Any]]) -> list[Expression]:
        out = []
        for ref in sorted(refs, key=lambda r: (int(r["image_id"]), int(r["ref_id"]))):
            for k, sentence in enumerate(ref["sentences"]):
                item_id = f"{ref['ref_id']}_{sentence.get('sent_id', k)}"
                out.append(Expression(int(ref["image_id"]), str(sentence["sent"]), tuple(ref_ann_ids(ref)), item_id))
        return out

    def image_path(self, image_id: int) -> Path:
        return self.image_dir / str(self.images[image_id]["file_name"])

    def mask(self, image_id: int, ann_ids: Sequence[int]) -> np.ndarray:
        """Union of the annotations' masks, [H, W] uint8 {0, 1}; all-zero for no target."""
        info = self.images[image_id]
        try:
            height, width = check_size(info.get("height"), info.get("width"), f"image {image_id} height/width")
        except RecordError as error:
            raise LisaError(f"{self.name} instances.json: {error}") from None
        mask = np.zeros((height, width), dtype=np.uint8)
        for ann_id in ann_ids:
            try:
                mask |= segmentation_mask(self.annotations[ann_id]["segmentation"], height, width)
            except RecordError as error:
                raise LisaError(f"{self.name} instances.json: annotation {ann_id}: {error}") from None
        return mask


class ReferEval(Sequence[EvalItem]):
    """Every sentence of every ref in the split; query = official short prompt, lower-cased."""

    def __init__(self, data_dir: Path, name: str, split: str, split_by: str | None = None) -> None:
        self.data = ReferData(data_dir, name, split, split_by)

    def __len__(self) -> int:
        return len(self.data.expressions)

    def __getitem__(self, position: int) -> EvalItem:  # type: ignore[override]
        expr = self.data.expressions[position]
        text = expr.sentence.strip().lower()
        return EvalItem(
            image=self.data.image_path(expr.image_id),
            query=templates.eval_query(text, False),
            target=self.data.mask(expr.image_id, expr.ann_ids),
            item_id=expr.item_id,
            meta={"text": text, "source": self.data.name, "no_target": not expr.ann_ids},
        )

    def __iter__(self) -> Iterator[EvalItem]:
        return (self[i] for i in range(len(self)))

    def keys(self) -> list[tuple[str, Path]]:
        """(item id, image) per item, without decoding any mask."""
        return [(e.item_id, self.data.image_path(e.image_id)) for e in self.data.expressions]


class ReferTrain:
    """Training samples: one image, up to ``max_queries`` of its expressions (short templates).

    gRefCOCO no-target expressions keep the official behaviour (``[SEG]`` with an all-zero
    mask) unless ``no_target_text`` is set, which answers "There is no such object in the
    image." with no mask.
    """

    def __init__(self, data_dir: Path, name: str, split: str = "train", max_queries: int = 3,
                 no_target_text: bool = False) -> None:
        self.data = ReferData(data_dir, name, split)
        self.source = name
        self.max_queries = max_queries
        self.no_target_text = no_target_text
        self.by_image: dict[int, list[Expression]] = {}
        for expr in self.data.expressions:
            self.by_image.setdefault(expr.image_id, []).append(expr)
        self.image_ids = sorted(self.by_image)

    def __len__(self) -> int:
        return len(self.image_ids)

    def sample(self, index: int, rng: random.Random) -> Sample:
        image_id = self.image_ids[index]
        exprs = self.by_image[image_id]
        conversations = []
        for expr in rng.sample(exprs, min(self.max_queries, len(exprs))):
            mask = self.data.mask(image_id, expr.ann_ids)[None]  # [1, H, W]
            question = templates.short_question(expr.sentence, rng)
            if not expr.ann_ids and self.no_target_text:
                conversations.append(Conversation([(question, templates.NO_TARGET_ANSWER)], mask[:0]))
            else:
                conversations.append(Conversation([(question, templates.answer(rng))], mask))
        return Sample(self.data.image_path(image_id), conversations, self.source, {"image_id": image_id})
