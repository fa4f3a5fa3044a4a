"""Turn what a user types into a request to segment, in the words the model was trained on.

LISA learns to answer with ``[SEG]`` only after its segmentation instruction: every
segmentation sample it is trained on is a phrase in a short template ("What is {phrase} in this
image? Please output segmentation mask.") or a sentence followed by "Please output segmentation
mask." (``lisa.data.templates``, the templates of the LISA paper's training code). A bare
"the blue circle" is, to the model, a chat turn, and it answers in text. ``segment_query``
wraps such text in the official evaluation wording (one of the training templates, so the
prompt is deterministic); text that already asks to segment is sent unchanged.
"""

from __future__ import annotations

import re

from lisa.data import templates

# Text that already asks for a mask ("Please output segmentation mask", "Can you segment ...").
_ASKS_TO_SEGMENT = re.compile(r"\bsegment", re.IGNORECASE)
# First words of a question, or of a request, written without its final punctuation.
QUESTION_WORDS = frozenset("what which where who whose how why when is are can could would will does do did".split())
REQUEST_WORDS = frozenset("show find point highlight mark locate give tell i please".split())

SEGMENT_HINT = (
    'tip: chat sends your text as typed; to get a mask, ask for one, e.g. '
    '"What is the red circle in this image? Please output segmentation mask." '
    '(`lisa segment` adds this wording for you)'
)


def is_sentence(text: str) -> bool:
    """A sentence (question or request) rather than a noun phrase: it ends like a sentence or
    starts with a question word or a verb of request."""
    words = text.split()
    if not words:
        return False
    return text.rstrip().endswith(("?", ".", "!")) or _first_word(words) in QUESTION_WORDS | REQUEST_WORDS


def segment_query(text: str) -> str:
    """The user's text as a segmentation request.

    "the blue circle" -> "What is the blue circle in this image? Please output segmentation mask."
    "Which object keeps you dry?" -> "Which object keeps you dry? Please output segmentation mask."
    Text that already mentions segmenting is returned unchanged (runs of spaces collapsed).
    """
    stripped = " ".join(text.split())
    if not stripped or _ASKS_TO_SEGMENT.search(stripped):
        return stripped
    if is_sentence(stripped):
        if not stripped.endswith(("?", ".", "!")):
            stripped += "?" if _first_word(stripped.split()) in QUESTION_WORDS else "."
        return templates.eval_query(stripped[0].upper() + stripped[1:], is_sentence=True)
    # Training fills the short templates with the lower-cased phrase.
    return templates.eval_query(stripped.rstrip(",;:").lower(), is_sentence=False)


def _first_word(words: list[str]) -> str:
    return words[0].lower().strip(",;:")
