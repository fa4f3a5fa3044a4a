"""Text answers: exact-match accuracy of generated answers on text-only (VQA) records."""

from __future__ import annotations

import re
from typing import Any, Sequence

_NON_WORD = re.compile(r"[^a-z0-9 ]+")


def normalise(text: str) -> str:
    """Lower case, punctuation dropped, single spaces: "There are 3 circles." == "there are 3 circles"."""
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def answer_accuracy(pipe: Any, records: Sequence[Any], batch_size: int = 8, max_new_tokens: int = 32) -> dict[str, Any]:
    """Generate an answer for every record (``image``, ``query``, ``answer``) and count exact
    matches after normalisation. Returns accuracy, n and the first mismatches."""
    correct, mistakes = 0, []
    for start in range(0, len(records), batch_size):
        batch = records[start : start + batch_size]
        results = pipe([r.image for r in batch], [r.query for r in batch], max_new_tokens=max_new_tokens,
                       raw=True)  # text questions: no segmentation wording
        for record, result in zip(batch, results):
            if normalise(result.text) == normalise(str(record.answer)):
                correct += 1
            elif len(mistakes) < 20:
                mistakes.append({"query": record.query, "expected": record.answer, "got": result.text})
    count = len(records)
    return {"accuracy": correct / count if count else 0.0, "n": count, "mistakes": mistakes}
