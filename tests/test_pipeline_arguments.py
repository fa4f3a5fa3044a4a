"""Misusing the Python API (``pipe(images, queries, ...)``) is one clear LisaError, raised before
any work, never a raw exception from deep inside or a silently accepted call."""

from __future__ import annotations

import numpy as np
import pytest

from lisa.errors import LisaError

IMAGE = np.full((24, 32, 3), 128, np.uint8)


@pytest.mark.parametrize("call, message", [
    (lambda p: p(IMAGE, None), r"queries must be a string or a list of strings, got None"),
    (lambda p: p([], []), r"no queries given"),
    (lambda p: p([], ["a"]), r"no images given"),
    (lambda p: p(None, "what is it?"), r"no image given: pass a path, a PIL image or a numpy array"),
    (lambda p: p([IMAGE, None], ["a", "b"]), r"images\[1\] is None"),
    (lambda p: p(IMAGE, "   "), r"the query is empty"),
    (lambda p: p(IMAGE, ["a", 3]), r"queries\[1\] must be a string, got 3"),
    (lambda p: p([IMAGE, IMAGE, IMAGE], ["a", "b"]), r"3 images but 2 queries: give one image, or one per query"),
    (lambda p: p(IMAGE, "q", max_new_tokens=-1), r"max_new_tokens must be an integer >= 1, got -1"),
    (lambda p: p(IMAGE, "q", max_new_tokens=0), r"max_new_tokens must be an integer >= 1, got 0"),
    (lambda p: p(IMAGE, "q", max_new_tokens="8"), r"max_new_tokens must be an integer >= 1, got '8'"),
    (lambda p: p(IMAGE, "q", max_new_tokens=True), r"max_new_tokens must be an integer >= 1, got True"),
    (lambda p: p(IMAGE, "q", history=["hello"]), r"history\[0\] must be a \(query, answer\) pair of strings, got 'hello'"),
    (lambda p: p(IMAGE, "q", history=[("a", "b", "c")]), r"history\[0\] must be a \(query, answer\) pair"),
    (lambda p: p(IMAGE, "q", history=[("a", None)]), r"history\[0\] must be a \(query, answer\) pair"),
    (lambda p: p(IMAGE, "q", history="a chat"), r"history must be a list of \(query, answer\) pairs"),
    (lambda p: p(IMAGE, ["a", "b"], history=[[]]), r"history must be a list with one conversation per query \(2\), got 1"),
    (lambda p: p(IMAGE, ["a", "b"], history=[[], [("x",)]]), r"history\[1\]\[0\] must be a \(query, answer\) pair"),
    (lambda p: p(IMAGE, ["a", "b", "c"], answers=["[SEG].", "[SEG]."]), r"answers must be a string or a list of 3 strings"),
    (lambda p: p(IMAGE, "q", answers=[None]), r"answers\[0\] must be a string, got None"),
])
def test_misuse_is_a_clear_error(tiny_pipeline, call, message: str) -> None:
    with pytest.raises(LisaError, match=message) as error:
        call(tiny_pipeline)
    assert "\n" not in str(error.value)


def test_valid_calls_still_work(tiny_pipeline) -> None:
    one = tiny_pipeline(IMAGE, "q", history=[["first", "[SEG]."]], answers="[SEG].")  # lists as pairs are fine
    assert one.masks.shape[1:] == IMAGE.shape[:2]
    many = tiny_pipeline(IMAGE, ("a", "b"), history=[[], [("x", "y")]], max_new_tokens=np.int64(2))
    assert len(many) == 2
