"""Plain phrases give a mask: `lisa segment` and the pipeline wrap them in LISA's segmentation
wording; chat and --raw send text as typed. Checked on the shipped lisa-tiny against true masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lisa.cli import main
from lisa.data.shapes.queries import describe
from lisa.data.shapes.scene import sample_scene
from lisa.inference.pipeline import LisaPipeline
from lisa.inference.queries import is_sentence, segment_query

DECLINE = "There is no such object in the image."  # LISA's answer for a target that is not there
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(("typed", "sent"), [
    ("the blue circle", "What is the blue circle in this image? Please output segmentation mask."),
    ("The Red  Star", "What is the red star in this image? Please output segmentation mask."),
    ("something round", "What is something round in this image? Please output segmentation mask."),
    ("What would keep you dry in the rain?", "What would keep you dry in the rain? Please output segmentation mask."),
    ("where is the dog", "Where is the dog? Please output segmentation mask."),
    ("show me every red shape", "Show me every red shape. Please output segmentation mask."),
    # already a segmentation request: unchanged
    ("Can you segment the grey diamond in this image?", "Can you segment the grey diamond in this image?"),
    ("What is dog in this image? Please output segmentation mask.",
     "What is dog in this image? Please output segmentation mask."),
])
def test_segment_query_uses_the_training_wording(typed: str, sent: str) -> None:
    assert segment_query(typed) == sent


def test_phrases_and_sentences_are_told_apart() -> None:
    assert not is_sentence("the largest object that is not red")
    assert is_sentence("Which shapes have the colour of a banana?")
    assert is_sentence("find the umbrella")


def _phrase_cases(count: int) -> list[tuple[np.ndarray, str, np.ndarray]]:
    """(image, "the red circle"-style phrase, true mask) for objects of fresh scenes (a seed no
    split uses), the shortest phrase that names each object uniquely, as users type them."""
    rng = np.random.default_rng(20_261_202)
    cases = []
    while len(cases) < count:
        scene = sample_scene(rng, 256)
        for index, obj in enumerate(scene.objects):
            description = describe(rng, scene.objects, index, allow_relation=False)
            mask = scene.object_mask(index)
            if description is not None and not obj.is_thing and mask.sum() > 200:
                cases.append((scene.image, description.text(), mask))
    return cases[:count]


def _coverage(masks: np.ndarray, target: np.ndarray) -> float:
    """The share of the target the predicted masks cover (the issue's "covers at least half")."""
    pred = masks.any(0) if len(masks) else np.zeros_like(target)
    return float((pred & target).sum() / target.sum())


@pytest.fixture(scope="module")
def lisa_tiny() -> LisaPipeline:
    return LisaPipeline.from_pretrained("lisa-tiny", device="cpu", dtype="float32")


def test_plain_phrases_give_masks_that_find_the_target_where_the_model_can(lisa_tiny) -> None:
    cases = _phrase_cases(24)
    images = [image for image, _, _ in cases]
    phrases = [phrase for _, phrase, _ in cases]
    evaluation = [f"What is {phrase} in this image? Please output segmentation mask." for phrase in phrases]
    official = lisa_tiny(images, evaluation, raw=True)  # the wording the model is evaluated with
    plain = lisa_tiny(images, phrases)  # what a user types
    typed_raw = lisa_tiny(images, phrases, raw=True)
    # every plain phrase is answered in the segmentation form: a mask, or (rarely) the decline
    assert all(("[SEG]" in r.text and len(r.masks)) or r.text == DECLINE for r in plain), [r.text for r in plain]
    # wrapping never makes it decline more than the evaluation wording does; since its stage 4 of
    # 2026-12-06 lisa-tiny declines none of these present objects (0 of 96; before: 9 of 96, 5 of
    # these 24, declined for their phrasing, docs/lisa-tiny-experiments.md section 10)
    declined = sum(r.text == DECLINE for r in plain)
    assert declined <= sum(r.text == DECLINE for r in official) and declined <= 1, [r.text for r in plain]
    # where the model finds the target with the evaluation wording, the plain phrase finds it too
    right = [i for i, (r, (_, _, target)) in enumerate(zip(official, cases)) if _coverage(r.masks, target) >= 0.5]
    assert len(right) >= 4, f"lisa-tiny covers only {len(right)} of 24 targets even with the evaluation wording"
    for i in right:
        assert _coverage(plain[i].masks, cases[i][2]) >= 0.5, (phrases[i], plain[i].text)
    # sent as typed (raw), the model sees other text: many answers differ from the wrapped ones
    assert sum(a.text != b.text for a, b in zip(typed_raw, plain)) >= 4, [r.text for r in typed_raw]


def test_readme_batched_example_returns_masks(lisa_tiny) -> None:
    results = lisa_tiny([EXAMPLES / "umbrella.jpg", EXAMPLES / "diamond.jpg"], ["the red umbrella", "something round"])
    assert [len(r.masks) for r in results] == [1, 1]
    assert all(r.masks.any() for r in results)


def test_segment_command_wraps_a_phrase_and_raw_keeps_it(tmp_path) -> None:
    image, phrase, target = _phrase_cases(2)[1]  # "the blue solid oval", which lisa-tiny finds
    Image.fromarray(image).save(tmp_path / "scene.png")
    code = main(["segment", str(tmp_path / "scene.png"), phrase, "--out", str(tmp_path / "plain"),
                 "--device", "cpu", "--threads", "1"])
    assert code == 0
    result = json.loads((tmp_path / "plain" / "result.json").read_text())
    assert result["query"] == phrase and result["prompt"] == segment_query(phrase)
    assert result["masks"], result["text"]
    mask = np.asarray(Image.open(tmp_path / "plain" / "mask_0.png")) > 0
    assert (mask & target).sum() > 0
    assert main(["segment", str(tmp_path / "scene.png"), phrase, "--raw", "--out", str(tmp_path / "raw"),
                 "--device", "cpu", "--threads", "1"]) == 0
    assert "prompt" not in json.loads((tmp_path / "raw" / "result.json").read_text())
