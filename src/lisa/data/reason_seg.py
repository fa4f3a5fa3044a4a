"""ReasonSeg (as the official ``utils/reason_seg_dataset.py`` reads them): ``X.jpg`` + ``X.json`` pairs, one folder per split.

Layouts accepted for ``data_dir`` and ``split`` (splits join with "_", e.g. ``train_val``):
``data_dir/<split>/`` (the synthetic generator) or the official
``data_dir/reason_seg/ReasonSeg/<split>/``. Explanatory answers are read from
``explanatory/train.json`` next to the split folders unless a path is given.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from lisa.data import templates
from lisa.data.polygons import reasonseg_mask
from lisa.data.validate import RecordError, image_hw
from lisa.data.sample import Conversation, EvalItem, Sample
from lisa.errors import LisaError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
OFFICIAL_SUBDIR = Path("reason_seg") / "ReasonSeg"
LAYOUT = "expected DIR/<split>/X.jpg + X.json, or DIR/reason_seg/ReasonSeg/<split>/X.jpg + X.json"


@dataclass(frozen=True)
class ReasonSegFile:
    """One annotated image: ``json_path`` and its ``image`` in the same folder."""

    json_path: Path
    image: Path

    @property
    def stem(self) -> str:
        return self.json_path.stem


def reasonseg_root(data_dir: Path) -> Path:
    """The folder holding the split folders: the official nested one when present."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise LisaError(f"ReasonSeg data dir {data_dir} does not exist; {LAYOUT}")
    nested = data_dir / OFFICIAL_SUBDIR
    return nested if nested.is_dir() else data_dir


def split_dirs(data_dir: Path, split: str) -> list[Path]:
    """The folders of ``split`` ("val", "train_val", ...), each checked to exist."""
    root = reasonseg_root(data_dir)
    folders = [root / name for name in split.split("_")]
    for folder in folders:
        if not folder.is_dir():
            raise LisaError(f"ReasonSeg split folder {folder} does not exist; {LAYOUT}")
    return folders


def _image_for(json_path: Path) -> Path:
    for suffix in IMAGE_SUFFIXES:
        candidate = json_path.with_suffix(suffix)
        if candidate.is_file():
            return candidate
    raise LisaError(f"ReasonSeg annotation {json_path} has no image {json_path.stem}.jpg next to it; {LAYOUT}")


def list_files(data_dir: Path, split: str) -> list[ReasonSegFile]:
    """All annotated images of a split, sorted by folder then name; errors on a missing image."""
    files: list[ReasonSegFile] = []
    for folder in split_dirs(data_dir, split):
        jsons = sorted(folder.glob("*.json"))
        if not jsons:
            raise LisaError(f"ReasonSeg split folder {folder} holds no *.json annotations; {LAYOUT}")
        files.extend(ReasonSegFile(path, _image_for(path)) for path in jsons)
    return files


def read_annotation(json_path: Path) -> dict[str, Any]:
    """Parse one annotation (UTF-8, falling back to cp1252 as the official reader) and check it."""
    raw = Path(json_path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("cp1252")
    try:
        anno = json.loads(text)
    except json.JSONDecodeError as error:
        raise LisaError(f"{json_path}: not valid JSON ({error})") from None
    texts = anno.get("text") if isinstance(anno, dict) else None
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise LisaError(f"{json_path}: 'text' must be a non-empty list of strings")
    if not isinstance(anno.get("is_sentence"), bool):
        raise LisaError(f"{json_path}: 'is_sentence' must be true or false")
    shapes = anno.get("shapes")
    if not isinstance(shapes, list) or not all(isinstance(s, dict) and "label" in s and "points" in s for s in shapes):
        raise LisaError(f"{json_path}: 'shapes' must be a list of {{'label', 'points'}} objects")
    return anno


def load_mask(file: ReasonSegFile, anno: dict[str, Any]) -> np.ndarray:
    """The [H, W] uint8 target {0, 1, 255} of one annotated image."""
    try:
        height, width = image_hw(file.image)
        return reasonseg_mask(anno["shapes"], height, width)
    except RecordError as error:
        raise LisaError(f"{file.json_path}: {error}") from None


class ReasonSegEval(Sequence[EvalItem]):
    """Evaluation items; the official protocol uses only ``text[0]`` (``all_texts=False``).

    Items are built lazily (masks of large images are big). ``item_id`` is the image stem,
    with ``#k`` appended for the k-th text (k > 0) when ``all_texts`` is set.
    """

    def __init__(self, data_dir: Path, split: str = "val", all_texts: bool = False) -> None:
        self.files = list_files(Path(data_dir), split)
        self.index: list[tuple[int, int]] = []  # (file index, text index)
        self.all_texts = all_texts
        for i, file in enumerate(self.files):
            count = len(read_annotation(file.json_path)["text"]) if all_texts else 1
            self.index.extend((i, k) for k in range(count))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, position: int) -> EvalItem:  # type: ignore[override]
        file_index, text_index = self.index[position]
        file = self.files[file_index]
        anno = read_annotation(file.json_path)
        text, is_sentence = anno["text"][text_index], anno["is_sentence"]
        item_id = file.stem if text_index == 0 else f"{file.stem}#{text_index}"  # as keys()
        return EvalItem(
            image=file.image,
            query=templates.eval_query(text, is_sentence),
            target=load_mask(file, anno),
            item_id=item_id,
            is_sentence=is_sentence,
            meta={"text": text, "stem": file.stem, "source": "reason_seg"},
        )

    def __iter__(self) -> Iterator[EvalItem]:
        return (self[i] for i in range(len(self)))

    def keys(self) -> list[tuple[str, Path]]:
        """(item id, image) per item, without reading any annotation."""
        return [(self.files[f].stem if k == 0 else f"{self.files[f].stem}#{k}", self.files[f].image)
                for f, k in self.index]


def load_explanatory(path: Path) -> dict[str, str]:
    """``explanatory/<split>.json`` (list of {image, query, outputs}) -> {image file name: outputs}."""
    if not Path(path).is_file():
        raise LisaError(f"ReasonSeg explanatory file {path} does not exist (expected a JSON list of "
                        "{'image', 'query', 'outputs'}); pass explanatory=-1 to train without it")
    items = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(items, list):
        raise LisaError(f"{path}: expected a JSON list of {{'image', 'query', 'outputs'}}")
    return {str(item["image"]): str(item["outputs"]) for item in items}


class ReasonSegTrain:
    """Training samples: up to ``max_queries`` texts per image, one ``[SEG]`` each.

    Ignore regions (255) become background. With an explanatory entry for the image, one
    choice per image (official ``utils/reason_seg_dataset.py``): p=explanatory -> text-only answer (no masks), else
    uniform between the template answer and "answer + explanation".

    ``explain_first`` (not in the official code) replaces both mask answers by the explanation
    followed by ``[SEG]`` (``templates.reasoned_answer``), asked with the plain question: the
    ``[SEG]`` state is then computed after the model has stated the fact and named the target,
    so it can attend to them instead of recalling the fact silently.
    """

    source = "reason_seg"

    def __init__(
        self,
        data_dir: Path,
        split: str = "train",
        explanatory: float = 0.1,
        explanatory_path: Path | None = None,
        max_queries: int = 3,
        explain_first: bool = False,
    ) -> None:
        self.files = list_files(Path(data_dir), split)
        self.explain_first = explain_first
        self.max_queries = max_queries
        self.explanatory = explanatory
        self.explanations: dict[str, str] = {}
        if explanatory >= 0:
            path = explanatory_path or reasonseg_root(Path(data_dir)) / "explanatory" / "train.json"
            self.explanations = load_explanatory(Path(path))

    def __len__(self) -> int:
        return len(self.files)

    def _choice(self, image_name: str, rng: random.Random) -> int:
        if self.explanatory < 0 or image_name not in self.explanations:
            return 0
        if rng.random() < self.explanatory:
            return 2
        return rng.choice((0, 1))

    def sample(self, index: int, rng: random.Random) -> Sample:
        """The training sample of image ``index``; template and text choices drawn from ``rng``."""
        file = self.files[index]
        anno = read_annotation(file.json_path)
        target = (load_mask(file, anno) == 1).astype(np.uint8)[None]  # [1, H, W]
        empty = target[:0]  # [0, H, W]
        texts = rng.sample(anno["text"], min(self.max_queries, len(anno["text"])))
        choice = self._choice(file.image.name, rng)
        explanation = self.explanations.get(file.image.name, "")
        conversations = []
        for text in texts:
            if choice in (0, 1) and self.explain_first and explanation:
                turn = (templates.question(text, anno["is_sentence"], rng), templates.reasoned_answer(explanation))
            elif choice == 1:
                turn = (templates.explanatory_question(text, rng), f"{templates.answer(rng)} {explanation}")
            elif choice == 2:
                turn = (text, explanation)
            else:
                turn = (templates.question(text, anno["is_sentence"], rng), templates.answer(rng))
            conversations.append(Conversation([turn], empty if choice == 2 else target))
        meta = {"stem": file.stem, "is_sentence": anno["is_sentence"], "explanatory_choice": choice}
        return Sample(file.image, conversations, self.source, meta)
