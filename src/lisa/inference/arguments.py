"""The checks on ``LisaPipeline.__call__``'s arguments, done before any work: a wrong call is one
LisaError that says what was given and what is expected, never a raw exception deep inside
tokenisation or generation, and never a silently odd result."""

from __future__ import annotations

import numbers
from typing import Any

from lisa.errors import LisaError

IMAGE_HINT = "a path, a PIL image or a numpy array"


def check_call(images: Any, queries: Any, history: Any, answers: Any, max_new_tokens: Any) -> None:
    """Raise a LisaError for the first wrong argument of ``pipe(images, queries, history, answers,
    max_new_tokens)``; see ``LisaPipeline.__call__`` for the accepted forms."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, numbers.Integral) or max_new_tokens < 1:
        raise LisaError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    single = isinstance(queries, str)
    if not single and not isinstance(queries, (list, tuple)):
        raise LisaError(f"queries must be a string or a list of strings, got {_kind(queries)}")
    query_list = [queries] if single else list(queries)
    if not query_list:
        raise LisaError("no queries given: pass a query string (or a list of them, one per image)")
    for index, query in enumerate(query_list):
        if not isinstance(query, str):
            raise LisaError(f"queries[{index}] must be a string, got {_kind(query)}")
        if not query.strip():
            raise LisaError(f"{'the query' if single else f'queries[{index}]'} is empty: ask something about the image")
    if images is None:
        raise LisaError(f"no image given: pass {IMAGE_HINT} (or a list of them)")
    image_list = list(images) if isinstance(images, (list, tuple)) else [images]
    if not image_list:
        raise LisaError(f"no images given: pass {IMAGE_HINT}, or a list with one per query")
    if any(image is None for image in image_list):
        raise LisaError(f"images[{[i is None for i in image_list].index(True)}] is None: pass {IMAGE_HINT}")
    if len(image_list) not in (1, len(query_list)):
        raise LisaError(f"{len(image_list)} images but {len(query_list)} queries: give one image, or one per query")
    if history is not None:
        if single:
            _check_turns(history, "history")
        else:
            if not isinstance(history, (list, tuple)) or len(history) != len(query_list):
                count = len(history) if isinstance(history, (list, tuple)) else _kind(history)
                raise LisaError(f"history must be a list with one conversation per query ({len(query_list)}), got {count}")
            for index, turns in enumerate(history):
                _check_turns(turns, f"history[{index}]")
    if answers is not None:
        answer_list = [answers] if isinstance(answers, str) else answers
        if not isinstance(answer_list, (list, tuple)) or len(answer_list) not in (1, len(query_list)):
            raise LisaError(f"answers must be a string or a list of {len(query_list)} strings (one per query), "
                            f"got {_kind(answers)}")
        for index, answer in enumerate(answer_list):
            if not isinstance(answer, str):
                raise LisaError(f"answers[{index}] must be a string, got {_kind(answer)}")


def _check_turns(turns: Any, name: str) -> None:
    """A conversation so far: a list of (query, answer) string pairs."""
    if not isinstance(turns, (list, tuple)):
        raise LisaError(f"{name} must be a list of (query, answer) pairs, got {_kind(turns)}")
    for index, turn in enumerate(turns):
        if not (isinstance(turn, (list, tuple)) and len(turn) == 2 and all(isinstance(t, str) for t in turn)):
            raise LisaError(f"{name}[{index}] must be a (query, answer) pair of strings, got {_kind(turn)}")


def _kind(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"a {type(value).__name__}"
