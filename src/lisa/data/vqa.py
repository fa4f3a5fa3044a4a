"""LLaVA-Instruct-150k conversations (the official ``utils/vqa_dataset.py``) as text-only training samples.

Layout: ``DIR/llava_dataset/llava_instruct_150k.json`` (a list of ``{"image", "conversations":
[{"from": "human"|"gpt", "value"}]}``) and images in ``DIR/coco/train2017/<image>``. The
``<image>`` tag is removed from the user text (the prompt builder places the image); a leading
``gpt`` turn is dropped; the whole dialogue is one conversation with no mask.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np

from lisa.data.images import image_size
from lisa.data.sample import Conversation, Sample
from lisa.errors import LisaError

IMAGE_TAG = "<image>"
LAYOUT = "DIR/llava_dataset/llava_instruct_150k.json and images in DIR/coco/train2017/"


def strip_image_tag(text: str) -> str:
    """Remove ``<image>`` (and the newline that follows it) from a user message."""
    return text.replace(IMAGE_TAG + "\n", "").replace("\n" + IMAGE_TAG, "").replace(IMAGE_TAG, "").strip()


def dialogue_turns(messages: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """[{from, value}, ...] -> [(user, assistant), ...]; a leading gpt message is dropped."""
    if messages and messages[0].get("from") != "human":
        messages = messages[1:]
    turns = []
    for user, assistant in zip(messages[0::2], messages[1::2]):
        if user.get("from") != "human" or assistant.get("from") != "gpt":
            raise ValueError(f"messages must alternate human/gpt, got {user.get('from')}/{assistant.get('from')}")
        turns.append((strip_image_tag(str(user["value"])), str(assistant["value"]).strip()))
    return turns


class LlavaInstruct:
    """VQA samples: one multi-turn conversation per image, zero masks."""

    source = "vqa"

    def __init__(self, data_dir: Path, json_name: str = "llava_instruct_150k.json") -> None:
        data_dir = Path(data_dir)
        path = data_dir / "llava_dataset" / json_name
        self.image_dir = data_dir / "coco" / "train2017"
        if not path.is_file():
            raise LisaError(f"{path} not found; expected {LAYOUT}")
        if not self.image_dir.is_dir():
            raise LisaError(f"{self.image_dir} not found; expected {LAYOUT}")
        self.items: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))

    def __len__(self) -> int:
        return len(self.items)

    def sample(self, index: int, rng: random.Random) -> Sample:
        item = self.items[index]
        image = self.image_dir / str(item["image"])
        if not image.is_file():
            raise LisaError(f"LLaVA-Instruct image {image} not found; expected {LAYOUT}")
        height, width = image_size(image)
        masks = np.zeros((0, height, width), dtype=np.uint8)
        return Sample(image, [Conversation(dialogue_turns(item["conversations"]), masks)], self.source,
                      {"id": item.get("id")})
