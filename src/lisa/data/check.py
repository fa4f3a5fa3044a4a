"""``lisa data check DIR``: validate a folder of JSONL records and list every problem.

Each problem names the file and line. Unknown keys are reported as warnings (they are ignored
by the loaders); everything else is an error.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from lisa.data.images import image_size
from lisa.data.jsonl import KNOWN_KEYS, Record, RecordError, iter_lines, jsonl_files, record_masks


@dataclass(frozen=True)
class Problem:
    file: Path
    line: int
    message: str
    warning: bool = False

    def __str__(self) -> str:
        level = "warning" if self.warning else "error"
        return f"{self.file}:{self.line}: {level}: {self.message}"


@dataclass
class CheckReport:
    problems: list[Problem] = field(default_factory=list)
    kinds: Counter = field(default_factory=Counter)  # record kind -> count
    files: int = 0

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if not p.warning]


def check_record_files(record: Record) -> list[str]:
    """Open the image and decode every target; returns the problems found (empty = fine)."""
    if not record.image.is_file():
        return [f"image {record.image} not found"]
    try:
        with Image.open(record.image) as image:
            image.verify()
        height, width = image_size(record.image)
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        return [f"image {record.image} cannot be read ({error})"]
    try:
        record_masks(record, height, width)
    except (RecordError, ValueError) as error:
        return [str(error)]
    return []


def check_folder(data_dir: Path, split: str | None = None) -> CheckReport:
    """Validate every line of every ``*.jsonl`` in the folder."""
    report = CheckReport()
    files = jsonl_files(data_dir, split)
    report.files = len(files)
    for file in files:
        for line, item in iter_lines(file):
            if isinstance(item, RecordError):
                report.problems.append(Problem(file, line, str(item)))
                continue
            report.kinds[item.kind] += 1
            for key in sorted(set(item.raw) - KNOWN_KEYS):
                report.problems.append(Problem(file, line, f"unknown key {key!r} is ignored", warning=True))
            report.problems.extend(Problem(file, line, message) for message in check_record_files(item))
    return report
