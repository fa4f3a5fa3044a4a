"""The shipped default model: it loads by name and segments the README's example."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lisa.cli import main
from lisa.inference.pipeline import LisaPipeline
from lisa.inference.resolve import shipped_models_dir

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def lisa_tiny():
    return LisaPipeline.from_pretrained("lisa-tiny", device="cpu", dtype="float32")


def test_lisa_tiny_is_small_safetensors() -> None:
    folder = shipped_models_dir() / "lisa-tiny"
    weights = folder / "model.safetensors"
    assert weights.is_file() and weights.stat().st_size < 50 * 1024 * 1024
    assert not list(folder.glob("*.bin")) and not list(folder.glob("*.pt"))


def test_lisa_tiny_answers_every_example_in_the_seg_form(lisa_tiny) -> None:
    for example in json.loads((EXAMPLES / "examples.json").read_text()):
        result = lisa_tiny(EXAMPLES / example["image"], example["query"])
        assert "[SEG]" in result.text
        assert result.masks.shape == (result.text.count("[SEG]"), 256, 256)


def test_demo_command_writes_outputs(tmp_path) -> None:
    code = main(["segment", str(EXAMPLES / "umbrella.jpg"),
                 "What in this picture would keep you dry in the rain? Please output segmentation mask.",
                 "--out", str(tmp_path), "--device", "cpu"])
    assert code == 0
    assert (tmp_path / "overlay.png").is_file() and (tmp_path / "result.json").is_file()
