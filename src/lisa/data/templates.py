"""Question / answer / explanatory templates (the official ``utils/utils.py``), without the ``<image>`` tag.

The prompt builder places the image; these strings are the user text after it.
"""

from __future__ import annotations

import random

SHORT_QUESTIONS = (
    "Can you segment the {class_name} in this image?",
    "Please segment the {class_name} in this image.",
    "What is {class_name} in this image? Please respond with segmentation mask.",
    "What is {class_name} in this image? Please output segmentation mask.",
)
LONG_QUESTIONS = (
    "{sent} Please respond with segmentation mask.",
    "{sent} Please output segmentation mask.",
)
EXPLANATORY_QUESTIONS = (
    "Please output segmentation mask and explain why.",
    "Please output segmentation mask and explain the reason.",
    "Please output segmentation mask and give some explanation.",
)
ANSWERS = (
    "It is [SEG].",
    "Sure, [SEG].",
    "Sure, it is [SEG].",
    "Sure, the segmentation result is [SEG].",
    "[SEG].",
)
NO_TARGET_ANSWER = "There is no such object in the image."

# Evaluation prompts of the official protocol (``train_ds.py:validate`` with ``utils/utils.py``), answer "[SEG]."
EVAL_SHORT = "What is {text} in this image? Please output segmentation mask."
EVAL_LONG = "{text} Please output segmentation mask."
EVAL_ANSWER = "[SEG]."


def short_question(phrase: str, rng: random.Random) -> str:
    """A random short template filled with the lower-cased phrase."""
    return rng.choice(SHORT_QUESTIONS).format(class_name=phrase.lower())


def long_question(sentence: str, rng: random.Random) -> str:
    """A random long template filled with the sentence as written."""
    return rng.choice(LONG_QUESTIONS).format(sent=sentence)


def question(text: str, is_sentence: bool, rng: random.Random) -> str:
    """Short template for phrases, long template for sentences."""
    return long_question(text, rng) if is_sentence else short_question(text, rng)


def answer(rng: random.Random) -> str:
    """A random answer with one ``[SEG]``."""
    return rng.choice(ANSWERS)


def reasoned_answer(explanation: str) -> str:
    """The explanation, then the mask: "A coin is a circle. So the red circle is the answer: [SEG]."."""
    return f"{explanation.strip().rstrip('.')}: [SEG]."


def explanatory_question(text: str, rng: random.Random) -> str:
    """"{text} {random explanatory question}" (explanatory choice 1)."""
    return f"{text} {rng.choice(EXPLANATORY_QUESTIONS)}"


def eval_query(text: str, is_sentence: bool) -> str:
    """The official evaluation prompt for one ReasonSeg / referring text."""
    return EVAL_LONG.format(text=text) if is_sentence else EVAL_SHORT.format(text=text)
