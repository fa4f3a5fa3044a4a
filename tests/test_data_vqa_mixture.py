"""LLaVA-Instruct conversations and the mixture sampler."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from _data_writers import write_image

from lisa.data.mixture import Mixture, parse_rates
from lisa.data.sample import Conversation, Sample
from lisa.data.vqa import LlavaInstruct
from lisa.errors import LisaError


def test_llava_instruct_conversation(tmp_path: Path) -> None:
    items = [{"id": "1", "image": "000000000001.jpg", "conversations": [
        {"from": "gpt", "value": "dropped"},
        {"from": "human", "value": "What is this?\n<image>"},
        {"from": "gpt", "value": "A cat."},
        {"from": "human", "value": "Colour?"},
        {"from": "gpt", "value": "Grey."},
    ]}]
    (tmp_path / "llava_dataset").mkdir()
    (tmp_path / "llava_dataset/llava_instruct_150k.json").write_text(json.dumps(items))
    write_image(tmp_path / "coco/train2017/000000000001.jpg", 8, 6)
    sample = LlavaInstruct(tmp_path).sample(0, random.Random(0))
    (conv,) = sample.conversations
    assert conv.turns == [("What is this?", "A cat."), ("Colour?", "Grey.")]
    assert conv.masks.shape == (0, 6, 8)


def test_llava_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LisaError, match="llava_instruct_150k.json not found; expected"):
        LlavaInstruct(tmp_path)


class _Fake:
    def __init__(self, source: str, n: int, empty_every: int = 0) -> None:
        self.source, self.n, self.empty_every = source, n, empty_every

    def __len__(self) -> int:
        return self.n

    def sample(self, index: int, rng: random.Random) -> Sample | None:
        if self.empty_every and index % self.empty_every == 0:
            return None
        conv = Conversation([(f"q{rng.random():.6f}", "a")], np.zeros((0, 1, 1), np.uint8))
        return Sample(Path(f"{self.source}/{index}.jpg"), [conv], self.source)


def _key(sample: Sample) -> tuple[str, str]:
    return str(sample.image), sample.conversations[0].turns[0][0]


def test_mixture_rates_determinism_and_resume() -> None:
    groups = [[_Fake("ade", 50), _Fake("coco", 50, empty_every=3)], [_Fake("ref", 50)], [_Fake("vqa", 50)],
              [_Fake("reason", 50)]]
    mixture = Mixture(groups, parse_rates("9,3,3,1"), seed=7)
    stream = mixture.stream()
    first = [_key(next(stream)) for _ in range(1600)]
    again = [_key(s) for s, _ in zip(Mixture(groups, [9, 3, 3, 1], seed=7).stream(), range(1600))]
    assert first == again
    resumed = mixture.stream(start=1000)
    assert [_key(next(resumed)) for _ in range(600)] == first[1000:]
    counts = {name: sum(k[0].startswith(name) for k in first) for name in ("ade", "coco", "ref", "vqa", "reason")}
    assert abs((counts["ade"] + counts["coco"]) / 1600 - 9 / 16) < 0.05
    assert abs(counts["reason"] / 1600 - 1 / 16) < 0.02
    assert first != [_key(s) for s, _ in zip(Mixture(groups, [9, 3, 3, 1], seed=8).stream(), range(1600))]


def test_mixture_errors() -> None:
    with pytest.raises(LisaError, match="comma-separated"):
        parse_rates("9,x")
    with pytest.raises(LisaError, match="2 dataset groups but 1"):
        Mixture([[_Fake("a", 1)], [_Fake("b", 1)]], [1.0])
    with pytest.raises(LisaError, match="found nothing"):
        Mixture([[_Fake("a", 3, empty_every=1)]], [1.0]).draw(0)
