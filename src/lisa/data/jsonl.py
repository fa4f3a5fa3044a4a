"""Users' own data: a folder of ``*.jsonl`` files, one query per line (see docs/data-format.md).

Record: ``{"image": "x.jpg", "query": "...", "answer": optional, "targets": [...],
"is_sentence": optional}``; each target is ``{"mask": "m.png"}``, ``{"polygons": [[x1, y1,
...], ...]}`` or ``{"rle": {"size": [h, w], "counts": "..."}}``. Paths are relative to the JSONL
file's folder. Kinds: segmentation (>= 1 target), no-target (no target, no answer) and
text-only (no target, an answer without ``[SEG]``). Paths must stay inside that folder (no
absolute path, no ``..`` out of it) unless ``allow_outside_paths`` is set.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from lisa.data import templates
from lisa.data.polygons import coco_polygons_mask, coco_rle_mask
from lisa.data.sample import SEG_TOKEN, Conversation, EvalItem, Sample
from lisa.data.validate import RecordError, check_coco_polygons, check_rle, image_hw, inside_path, read_mask_file
from lisa.errors import LisaError

KNOWN_KEYS = {"image", "query", "answer", "targets", "is_sentence", "id", "meta"}
MAX_LINE_BYTES = 64 * 1024 * 1024  # a longer JSONL line is refused without being read whole
MAX_QUERY_CHARS = 4096  # a query or answer longer than this is refused (docs/limits.md)
SEG, NO_TARGET, TEXT_ONLY = "segmentation", "no_target", "text_only"


@dataclass
class Record:
    """One parsed line. ``base`` is the JSONL file's folder; ``line`` counts from 1."""

    file: Path
    line: int
    image: Path
    query: str
    answer: str | None
    targets: list[dict[str, Any]]
    is_sentence: bool
    raw: dict[str, Any] = field(default_factory=dict)
    allow_outside_paths: bool = False

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def kind(self) -> str:
        if self.targets:
            return SEG
        return TEXT_ONLY if self.answer is not None else NO_TARGET

    @property
    def one_mask_per_target(self) -> bool:
        """True when the answer has one ``[SEG]`` per target (else the targets are unioned)."""
        return self.answer is not None and len(self.targets) > 1 and self.answer.count(SEG_TOKEN) == len(self.targets)


def _check_target(target: Any, index: int) -> None:
    """Structure only (the image size is not known yet): one of mask / polygons / rle, well formed."""
    where = f"targets[{index}]"
    if not isinstance(target, dict) or len(set(target) & {"mask", "polygons", "rle"}) != 1:
        raise RecordError(f"{where} must be an object with exactly one of 'mask', 'polygons', 'rle'")
    if "mask" in target and not isinstance(target["mask"], str):
        raise RecordError(f"{where}.mask must be a path string")
    if "polygons" in target:
        check_coco_polygons(target["polygons"], what=f"{where}.polygons")
    if "rle" in target:
        check_rle(target["rle"], what=f"{where}.rle")


def _check_answer(answer: str | None, n_targets: int) -> None:
    if answer is None:
        return
    n_seg = answer.count(SEG_TOKEN)
    if n_targets == 0 and n_seg:
        raise RecordError(f"answer has {n_seg} {SEG_TOKEN} but there are no targets")
    if n_targets and n_seg not in (1, n_targets):
        raise RecordError(f"answer has {n_seg} {SEG_TOKEN} for {n_targets} targets; use 1 (union) or {n_targets}")


def parse_record(obj: Any, file: Path, line: int, allow_outside_paths: bool = False) -> Record:
    """Check the structure of one decoded JSON line (files are not opened here)."""
    if not isinstance(obj, dict):
        raise RecordError("a record must be a JSON object")
    for key, kind in (("image", str), ("query", str)):
        if not isinstance(obj.get(key), kind) or not obj[key].strip():
            raise RecordError(f"'{key}' is required and must be a non-empty string")
    answer = obj.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise RecordError("'answer' must be a string when given")
    for key in ("query", "answer"):
        if isinstance(obj.get(key), str) and len(obj[key]) > MAX_QUERY_CHARS:
            raise RecordError(f"'{key}' has {len(obj[key]):,} characters, above the limit of {MAX_QUERY_CHARS:,}")
    targets = obj.get("targets", [])
    if not isinstance(targets, list):
        raise RecordError("'targets' must be a list (empty for no target)")
    for index, target in enumerate(targets):
        _check_target(target, index)
    is_sentence = obj.get("is_sentence", False)
    if not isinstance(is_sentence, bool):
        raise RecordError("'is_sentence' must be true or false")
    _check_answer(answer, len(targets))
    base = file.parent
    image = inside_path(base, obj["image"], base, allow_outside_paths, "image")
    for index, target in enumerate(targets):
        if "mask" in target:
            inside_path(base, target["mask"], base, allow_outside_paths, f"targets[{index}].mask")
    return Record(file, line, image, obj["query"], answer, targets, is_sentence, obj, allow_outside_paths)


def _lines(handle) -> Iterator[bytes | None]:
    """Raw lines of a binary file; None for a line longer than MAX_LINE_BYTES (skipped, not read whole)."""
    while True:
        chunk = handle.readline(MAX_LINE_BYTES + 1)
        if not chunk:
            return
        if len(chunk) <= MAX_LINE_BYTES or chunk.endswith(b"\n"):
            yield chunk
            continue
        while chunk and not chunk.endswith(b"\n"):  # drain the rest of the long line
            chunk = handle.readline(MAX_LINE_BYTES)
        yield None


def _parse_line(raw: bytes | None, file: Path, number: int, allow_outside_paths: bool) -> Record | RecordError:
    if raw is None:
        return RecordError(f"line is longer than {MAX_LINE_BYTES:,} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return RecordError(f"not UTF-8 text (byte {error.start} of the line); save the file as UTF-8")
    try:
        return parse_record(json.loads(text), file, number, allow_outside_paths)
    except json.JSONDecodeError as error:
        return RecordError(f"not valid JSON ({error.msg} at column {error.colno})")
    except RecursionError:
        return RecordError("JSON nested too deeply")
    except RecordError as error:
        return error


def iter_lines(file: Path, allow_outside_paths: bool = False) -> Iterator[tuple[int, Record | RecordError]]:
    """(line number, Record or the error) for every non-blank line of a JSONL file; a bad line
    (not UTF-8, not JSON, too long, malformed) is reported and the next one read."""
    with open(file, "rb") as handle:
        for number, raw in enumerate(_lines(handle), start=1):
            if raw is not None and not raw.strip():
                continue
            yield number, _parse_line(raw, file, number, allow_outside_paths)


def jsonl_files(data_dir: Path, split: str | None = None, names: list[str] | None = None) -> list[Path]:
    """``*.jsonl`` directly in ``data_dir/split`` (when given and present) or ``data_dir``;
    ``names`` keeps only those file stems (e.g. ["referring"])."""
    data_dir = Path(data_dir)
    folder = data_dir / split if split and (data_dir / split).is_dir() else data_dir
    if not folder.is_dir():
        raise LisaError(f"data folder {folder} does not exist; expected a folder of *.jsonl files "
                        "(see docs/data-format.md)")
    files = sorted(folder.glob("*.jsonl"))
    if names:
        missing = sorted(set(names) - {f.stem for f in files})
        if missing:
            raise LisaError(f"{folder}: no {', '.join(m + '.jsonl' for m in missing)}")
        files = [f for f in files if f.stem in names]
    if not files:
        raise LisaError(f"{folder} holds no *.jsonl files; expected one record per line "
                        "(see docs/data-format.md)")
    return files


def read_records(data_dir: Path, split: str | None = None, names: list[str] | None = None,
                 allow_outside_paths: bool = False) -> list[Record]:
    """All records; the first malformed line raises LisaError with its file and line."""
    records = []
    for file in jsonl_files(data_dir, split, names):
        for number, item in iter_lines(file, allow_outside_paths):
            if isinstance(item, RecordError):
                raise LisaError(f"{file}:{number}: {item} (run `lisa data check` to list every problem)")
            records.append(item)
    return records


def decode_target(target: dict[str, Any], base: Path, height: int, width: int, allow_outside_paths: bool = False,
                  index: int = 0) -> np.ndarray:
    """One target -> [H, W] uint8 {0, 1}; raises RecordError on a missing or bad file, bad geometry or
    a wrong size (checks: lisa.data.validate)."""
    where = f"targets[{index}]"
    if "mask" in target:
        path = inside_path(base, target["mask"], base, allow_outside_paths, f"{where}.mask")
        return read_mask_file(path, height, width, what=f"{where}.mask").astype(np.uint8)
    if "polygons" in target:
        check_coco_polygons(target["polygons"], height, width, what=f"{where}.polygons")
        return coco_polygons_mask(target["polygons"], height, width)
    check_rle(target["rle"], height, width, what=f"{where}.rle")
    return coco_rle_mask(target["rle"], height, width)


def record_masks(record: Record, height: int, width: int) -> np.ndarray:
    """Masks for the record's ``[SEG]``s: [n_targets, H, W] one per target or [1, H, W] union; [0, H, W] if none."""
    masks = [decode_target(t, record.file.parent, height, width, record.allow_outside_paths, i)
             for i, t in enumerate(record.targets)]
    if not masks:
        return np.zeros((0, height, width), dtype=np.uint8)
    stacked = np.stack(masks)
    return stacked if record.one_mask_per_target else stacked.max(axis=0, keepdims=True)


def _image_hw(record: Record) -> tuple[int, int]:
    try:
        return image_hw(record.image)
    except RecordError as error:
        raise LisaError(f"{record.where}: {error}") from None


def _masks_or_error(record: Record, height: int, width: int) -> np.ndarray:
    try:
        return record_masks(record, height, width)
    except RecordError as error:
        raise LisaError(f"{record.where}: {error}") from None


def train_turn(record: Record, rng: random.Random, no_target_as_empty_mask: bool = False) -> tuple[str, str]:
    """(user, assistant) text for training, templates applied as docs/data-format.md says; with
    ``no_target_as_empty_mask`` a no-target record gets a mask answer (its mask is empty)."""
    if record.kind == TEXT_ONLY:
        return record.query, str(record.answer)
    user = templates.question(record.query, record.is_sentence, rng)
    if record.answer is not None:
        return user, record.answer
    declines = record.kind == NO_TARGET and not no_target_as_empty_mask
    return user, templates.NO_TARGET_ANSWER if declines else templates.answer(rng)


def eval_query(record: Record) -> str:
    """The evaluation prompt: the official short / long evaluation templates."""
    return templates.eval_query(record.query, record.is_sentence)


class JsonlTrain:
    """Training samples; records of one image (from one file) are grouped, up to ``max_queries``
    per sample. Text-only records are samples of their own. ``no_target_as_empty_mask``: a
    no-target record is answered with ``[SEG]`` and an all-background mask instead of the decline
    text (not in the official code; a decline is then read off an empty mask)."""

    def __init__(
        self, data_dir: Path, split: str | None = None, max_queries: int = 3, source: str = "jsonl",
        names: list[str] | None = None, allow_outside_paths: bool = False, no_target_as_empty_mask: bool = False,
    ) -> None:
        self.source = source
        self.max_queries = max_queries
        self.no_target_as_empty_mask = no_target_as_empty_mask
        groups: dict[tuple[Path, Path], list[Record]] = {}
        self.groups: list[list[Record]] = []
        for record in read_records(data_dir, split, names, allow_outside_paths):
            if record.kind == TEXT_ONLY:
                self.groups.append([record])
            else:
                groups.setdefault((record.file, record.image), []).append(record)
        self.groups.extend(groups.values())

    def __len__(self) -> int:
        return len(self.groups)

    def sample(self, index: int, rng: random.Random) -> Sample:
        group = self.groups[index]
        height, width = _image_hw(group[0])
        chosen = rng.sample(group, min(self.max_queries, len(group)))
        conversations = []
        for record in chosen:
            turn = train_turn(record, rng, self.no_target_as_empty_mask)
            masks = _masks_or_error(record, height, width)
            if SEG_TOKEN not in turn[1]:
                masks = masks[:0]
            elif record.kind == NO_TARGET:  # the mask answer of a no-target record: find nothing
                masks = np.zeros((1, height, width), dtype=np.uint8)
            conversations.append(Conversation([turn], masks))
        return Sample(group[0].image, conversations, self.source, {"lines": [r.where for r in chosen]})


class JsonlEval(Sequence[EvalItem]):
    """Segmentation and no-target records as EvalItems; text-only records are counted in
    ``skipped_text_only`` (they have nothing to score)."""

    def __init__(self, data_dir: Path, split: str | None = None, names: list[str] | None = None,
                 allow_outside_paths: bool = False) -> None:
        records = read_records(data_dir, split, names, allow_outside_paths)
        self.records = [r for r in records if r.kind != TEXT_ONLY]
        self.text_only = [r for r in records if r.kind == TEXT_ONLY]  # scored by answer accuracy
        self.skipped_text_only = len(self.text_only)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, position: int) -> EvalItem:  # type: ignore[override]
        record = self.records[position]
        height, width = _image_hw(record)
        masks = _masks_or_error(record, height, width)
        target = masks.max(axis=0) if len(masks) else np.zeros((height, width), dtype=np.uint8)
        item_id = _item_id(record)
        return EvalItem(record.image, eval_query(record), target, item_id, record.is_sentence,
                        {"text": record.query, "where": record.where, "kind": record.kind})

    def __iter__(self) -> Iterator[EvalItem]:
        return (self[i] for i in range(len(self)))

    def keys(self) -> list[tuple[str, Path]]:
        """(item id, image) per item, without decoding any target."""
        return [(_item_id(r), r.image) for r in self.records]


def _item_id(record: Record) -> str:
    """The record's ``id`` when given, else ``<file stem>:<line>``."""
    return str(record.raw.get("id", f"{record.file.stem}:{record.line}"))
