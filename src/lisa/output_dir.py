"""Output folders written whole or not at all.

A command that writes a folder (``lisa segment --out``, ``eval --visualize`` / ``--save-predictions``,
``export``, ``convert``, ``init``, ``tiny-model``, ``shapes generate``) first calls
``check_output_dir`` (before any slow work: a file in the way, a non-empty folder without
``--overwrite`` or an unwritable place is refused at once), then writes into a hidden staging folder
beside the target (same file system) that is renamed into place only when everything is written.
``--overwrite`` replaces the old folder whole, so no stale file of an earlier run (``mask_2.png``
beside a ``result.json`` listing one mask) survives; a failed run leaves the old folder untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from lisa.errors import LisaError

STAGE_PREFIX = ".lisa-partial-"


def _existing_ancestor(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def _check_writable(path: Path, flag: str) -> None:
    """Can ``path`` be created? A real probe: permission bits say nothing for root or a read-only mount."""
    ancestor = _existing_ancestor(path.parent)
    if not ancestor.is_dir():
        raise LisaError(f"{flag} {path}: {ancestor} is a file, so no folder can be made below it; choose another path")
    try:
        Path(tempfile.mkdtemp(dir=ancestor, prefix=STAGE_PREFIX)).rmdir()
    except OSError as error:
        raise LisaError(f"{flag} {path}: cannot write into {ancestor} ({error.strerror or error}); "
                        "choose a writable folder") from None


def check_output_dir(path: Path, overwrite: bool = False, flag: str = "--out") -> Path:
    """Refuse a target we must not or cannot write, before any work is done; returns the absolute path."""
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise LisaError(f"{flag} {path} is an existing file; give a folder path (a new one, or an existing folder "
                        "with --overwrite)")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise LisaError(f"{flag} {path} already holds files; pass --overwrite to replace that folder whole, "
                        "or choose a new folder")
    _check_writable(path, flag)
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def staged_output_dir(path: Path, overwrite: bool = False, flag: str = "--out") -> Iterator[Path]:
    """Yield an empty staging folder; on success it becomes ``path`` (replacing it whole with
    ``overwrite``); on any error it is removed and ``path`` is left as it was."""
    path = check_output_dir(path, overwrite, flag)
    path.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=path.parent, prefix=STAGE_PREFIX + path.name + "-"))
    try:
        yield stage
        stage.chmod(0o777 & ~_umask())  # mkdtemp makes 0700; the result should look like mkdir's
        publish(stage, path, overwrite, flag)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def publish(stage: Path, path: Path, overwrite: bool, flag: str = "--out") -> None:
    """Rename ``stage`` to ``path``; an existing ``path`` (empty, or any with ``overwrite``) is swapped out
    and removed only after the new folder is in place."""
    if not path.exists():
        os.rename(stage, path)
        return
    if any(path.iterdir()) and not overwrite:  # something appeared there while we worked
        raise LisaError(f"{flag} {path} was filled by something else meanwhile; nothing was replaced "
                        "(rerun with --overwrite or another folder)")
    old = Path(tempfile.mkdtemp(dir=path.parent, prefix=STAGE_PREFIX + path.name + "-old-"))
    os.rename(path, old / path.name)
    os.rename(stage, path)
    shutil.rmtree(old, ignore_errors=True)


def check_output_file(path: Path, flag: str = "--out") -> Path:
    """Refuse, before any work, an output file path that is a folder or lies where nothing can be written."""
    path = Path(path).absolute()
    if path.is_dir():
        raise LisaError(f"{flag} {path} is a folder; give a file path such as {path / 'report.json'}")
    _check_writable(path, flag)
    return path


def write_text_atomic(path: Path, text: str) -> None:
    """Write a text file through a temporary file in the same folder: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=STAGE_PREFIX + path.name + "-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            file.write(text)
        os.chmod(temp, 0o666 & ~_umask())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
