"""``lisa data check DIR``: validate a folder of JSONL records and list every problem.

Each problem names the file and line. Unknown keys are reported as warnings (they are ignored
by the loaders); everything else is an error. A bad record never stops the check: its problem
is listed and the next line is read, so one run lists every problem of the folder. The checks
are the loaders' own (lisa.data.validate), so a folder that passes loads for training and eval.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lisa.data.jsonl import KNOWN_KEYS, Record, decode_target, iter_lines, jsonl_files
from lisa.data.validate import RecordError, image_hw, open_image_checked


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
    """Open the image, decode every target; returns the problems found (empty = fine)."""
    try:
        with open_image_checked(record.image) as image:
            image.verify()  # reads the whole file: truncated / corrupt data shows here
        height, width = image_hw(record.image)
    except RecordError as error:
        return [str(error)]
    except Exception as error:  # noqa: BLE001 - a decoder's own exception must not end the check
        return [f"image {record.image} cannot be read ({type(error).__name__}: {error})"]
    problems = []
    for index, target in enumerate(record.targets):
        try:
            decode_target(target, record.file.parent, height, width, record.allow_outside_paths, index)
        except RecordError as error:
            problems.append(str(error))
        except Exception as error:  # noqa: BLE001
            problems.append(f"targets[{index}] cannot be decoded ({type(error).__name__}: {error})")
    return problems


def check_folder(data_dir: Path, split: str | None = None, allow_outside_paths: bool = False) -> CheckReport:
    """Validate every line of every ``*.jsonl`` in the folder."""
    report = CheckReport()
    files = jsonl_files(data_dir, split)
    report.files = len(files)
    for file in files:
        try:
            for line, item in iter_lines(file, allow_outside_paths):
                if isinstance(item, RecordError):
                    report.problems.append(Problem(file, line, str(item)))
                    continue
                report.kinds[item.kind] += 1
                for key in sorted(set(item.raw) - KNOWN_KEYS):
                    report.problems.append(Problem(file, line, f"unknown key {key!r} is ignored", warning=True))
                report.problems.extend(Problem(file, line, message) for message in check_record_files(item))
        except OSError as error:  # the file itself cannot be read: say so, check the next file
            report.problems.append(Problem(file, 0, f"cannot read the file ({error.strerror or error})"))
    return report
