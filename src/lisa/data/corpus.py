"""Every text of a set of dataset folders: what a fresh tokenizer is trained on."""

from __future__ import annotations

import glob
import json
from pathlib import Path

from lisa.errors import LisaError


def corpus_texts(paths: list[Path]) -> list[str]:
    """Queries and answers of every ``*.jsonl`` record, and ReasonSeg ``text`` lists and
    explanatory ``outputs`` of every ``*.json`` file, in or below each path (sorted: deterministic).
    A path with ``*``, ``?`` or ``[`` is a pattern: the files it matches, sorted. Name files or
    patterns rather than a folder where later files in that folder must not change the tokenizer."""
    texts: list[str] = []
    for root in paths:
        if any(c in str(root) for c in "*?["):
            files = [Path(f) for f in sorted(glob.glob(str(root))) if Path(f).is_file()]
            if not files:
                raise LisaError(f"tokenizer corpus pattern {root} matches no file")
        elif not root.exists():
            raise LisaError(f"tokenizer corpus path {root} does not exist")
        else:
            files = [root] if root.is_file() else sorted(root.rglob("*.json*"))
        for path in (f for f in files if f.suffix == ".jsonl"):
            for line in path.read_text(encoding="utf-8").splitlines():
                if line.strip():
                    record = json.loads(line)
                    texts.extend(str(record[k]) for k in ("query", "answer") if record.get(k))
        for path in (f for f in files if f.suffix == ".json"):
            texts.extend(_json_texts(json.loads(path.read_text(encoding="utf-8"))))
    return texts


def _json_texts(data: object) -> list[str]:
    if isinstance(data, dict):
        return [t for t in data.get("text", []) if isinstance(t, str)]
    if isinstance(data, list):  # explanatory answers
        return [str(e.get(k)) for e in data if isinstance(e, dict) for k in ("query", "outputs") if e.get(k)]
    return []
