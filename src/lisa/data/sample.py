"""The unit every loader produces and every consumer (collate, evaluation) reads.

A `Sample` is one image with one or more conversations about it. Each conversation is a list
of (user, assistant) turns; the assistant text contains one literal ``[SEG]`` per target mask,
in order, and ``masks`` holds exactly that many masks at the image's original size.

Mask values: 1 = target, 0 = background, 255 = ignore (kept for evaluation; training treats it
as background). A conversation whose answers contain no ``[SEG]`` (VQA, no-target queries) has
``masks`` of shape ``[0, H, W]``.

User text never carries the ``<image>`` placeholder: the prompt builder places the image itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lisa.batch import SEG_TOKEN  # noqa: F401  (loaders import it from here)


@dataclass
class Conversation:
    turns: list[tuple[str, str]]  # (user text, assistant text)
    masks: np.ndarray  # [n_seg, H, W] uint8 in {0, 1, 255}

    def __post_init__(self) -> None:
        n_seg = sum(answer.count(SEG_TOKEN) for _, answer in self.turns)
        if self.masks.ndim != 3 or self.masks.shape[0] != n_seg:
            raise ValueError(
                f"conversation has {n_seg} {SEG_TOKEN} in its answers but masks of shape "
                f"{tuple(self.masks.shape)}; expected [{n_seg}, H, W]"
            )


@dataclass
class Sample:
    image: Path  # image file on disk
    conversations: list[Conversation]
    source: str = ""  # dataset name, e.g. "reason_seg", "refcoco", "shapes_referring"
    meta: dict[str, Any] = field(default_factory=dict)  # free-form: ids, is_sentence, ...


@dataclass
class EvalItem:
    """One query to score: the image, the user's query text and the target mask.

    ``query`` is the prompt text given to the model (already templated, no ``<image>``);
    ``target`` is [H, W] uint8 with 1 = target, 0 = background, 255 = ignore. An all-zero
    target is a no-target query.
    """

    image: Path
    query: str
    target: np.ndarray
    item_id: str
    is_sentence: bool = False
    meta: dict[str, Any] = field(default_factory=dict)
