"""ReasonSeg loader on tiny files in the real format (the official utils/reason_seg_dataset.py format)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from _data_writers import shape, square, write_reasonseg

from lisa.data.reason_seg import ReasonSegEval, ReasonSegTrain, read_annotation
from lisa.errors import LisaError


def _make(root: Path, split: str = "val") -> None:
    folder = root / split
    write_reasonseg(folder, "a", ["The Cup", "a mug"], False,
                    [shape("target", square(2, 2, 20, 20)), shape("ignore", square(5, 5, 8, 8)),
                     shape("flag", square(0, 0, 39, 29))])
    write_reasonseg(folder, "b", ["Something you drink from.", "x", "y", "z"], True,
                    [shape("target", square(0, 0, 5, 5))])


def test_eval_items_follow_the_official_protocol(tmp_path: Path) -> None:
    _make(tmp_path)
    items = ReasonSegEval(tmp_path, "val")
    assert len(items) == 2
    a, b = items[0], items[1]
    assert a.query == "What is The Cup in this image? Please output segmentation mask."
    assert b.query == "Something you drink from. Please output segmentation mask."
    assert (a.item_id, a.is_sentence, b.is_sentence) == ("a", False, True)
    assert a.target.shape == (30, 40) and a.target[6, 6] == 255 and a.target[3, 3] == 1 and a.target[25, 30] == 0
    assert len(ReasonSegEval(tmp_path, "val", all_texts=True)) == 6
    assert ReasonSegEval(tmp_path, "val", all_texts=True)[1].item_id == "a#1"


def test_official_nested_layout_and_joined_splits(tmp_path: Path) -> None:
    nested = tmp_path / "reason_seg" / "ReasonSeg"
    _make(nested, "train")
    _make(nested, "val")
    assert len(ReasonSegEval(tmp_path, "train_val")) == 4


def test_missing_folder_and_missing_image_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(LisaError, match="val.*does not exist.*expected"):
        ReasonSegEval(tmp_path, "val")
    _make(tmp_path)
    (tmp_path / "val" / "b.jpg").unlink()
    with pytest.raises(LisaError, match=r"b\.json has no image b\.jpg"):
        ReasonSegEval(tmp_path, "val")


def test_cp1252_fallback_and_bad_annotation(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    path.write_bytes('{"text": ["caf\xe9"], "is_sentence": false, "shapes": []}'.encode("cp1252"))
    assert read_annotation(path)["text"] == ["caf\xe9"]
    path.write_text(json.dumps({"text": "not a list", "is_sentence": False, "shapes": []}))
    with pytest.raises(LisaError, match="'text' must be a non-empty list"):
        read_annotation(path)


def test_training_samples_templates_and_ignore_as_background(tmp_path: Path) -> None:
    _make(tmp_path, "train")
    data = ReasonSegTrain(tmp_path, "train", explanatory=-1)
    sample = data.sample(1, random.Random(0))
    assert len(sample.conversations) == 3  # up to 3 of the 4 texts
    for conv in sample.conversations:
        (user, answer), = conv.turns
        assert answer.count("[SEG]") == 1 and "<image>" not in user
        assert user.endswith("segmentation mask.")
    short = data.sample(0, random.Random(0))
    mask = short.conversations[0].masks
    assert mask.shape == (1, 30, 40) and set(np.unique(mask)) == {0, 1} and mask[0, 6, 6] == 0
    assert any(q in short.conversations[0].turns[0][0] for q in ("the cup", "a mug"))  # lower-cased


def test_explanatory_choices(tmp_path: Path) -> None:
    _make(tmp_path, "train")
    explanations = [{"image": "a.jpg", "query": "q", "outputs": "Because it holds coffee."}]
    (tmp_path / "explanatory").mkdir()
    (tmp_path / "explanatory" / "train.json").write_text(json.dumps(explanations))
    data = ReasonSegTrain(tmp_path, "train", explanatory=0.1)
    choices = {data.sample(0, random.Random(seed)).meta["explanatory_choice"] for seed in range(60)}
    assert choices == {0, 1, 2}
    for seed in range(60):
        sample = data.sample(0, random.Random(seed))
        choice, conv = sample.meta["explanatory_choice"], sample.conversations[0]
        user, answer = conv.turns[0]
        if choice == 2:
            assert answer == "Because it holds coffee." and conv.masks.shape[0] == 0 and user in ("The Cup", "a mug")
        if choice == 1:
            assert answer.endswith(" Because it holds coffee.") and "[SEG]" in answer and "segmentation mask and" in user
    assert data.sample(1, random.Random(0)).meta["explanatory_choice"] == 0  # no entry for b.jpg
    with pytest.raises(LisaError, match="explanatory file .*other.json"):
        ReasonSegTrain(tmp_path, "train", explanatory_path=tmp_path / "other.json")


def test_explain_first_states_the_explanation_before_the_mask(tmp_path: Path) -> None:
    _make(tmp_path, "train")
    explanations = [{"image": "a.jpg", "query": "q", "outputs": "A cup holds coffee. So the cup is the answer."}]
    (tmp_path / "explanatory").mkdir()
    (tmp_path / "explanatory" / "train.json").write_text(json.dumps(explanations))
    data = ReasonSegTrain(tmp_path, "train", explanatory=0.1, explain_first=True)
    seen = set()
    for seed in range(60):
        sample = data.sample(0, random.Random(seed))
        choice, conv = sample.meta["explanatory_choice"], sample.conversations[0]
        user, answer = conv.turns[0]
        seen.add(answer)
        if choice == 2:  # the text-only answer stays as in the official loader
            assert answer == "A cup holds coffee. So the cup is the answer." and conv.masks.shape[0] == 0
        else:  # the plain evaluation-style question; the mask comes after the explanation
            assert answer == "A cup holds coffee. So the cup is the answer: [SEG]."
            assert conv.masks.shape == (1, 30, 40) and ("the cup" in user or "a mug" in user)
            assert "explain" not in user and "image" in user
    assert len(seen) == 2
    # Images without an explanation keep the template answers.
    (_, plain), = data.sample(1, random.Random(0)).conversations[0].turns
    assert plain in ("It is [SEG].", "Sure, [SEG].", "Sure, it is [SEG].", "Sure, the segmentation result is [SEG].", "[SEG].")


def test_explain_first_reaches_the_loader_from_a_config(tmp_path: Path) -> None:
    from lisa.train.config import load_config
    from lisa.train.data import build_group

    _make(tmp_path, "train")
    (tmp_path / "explanatory").mkdir()
    (tmp_path / "explanatory" / "train.json").write_text(json.dumps([{"image": "a.jpg", "query": "q", "outputs": "Why."}]))
    (tmp_path / "explanatory" / "train-facts.json").write_text(json.dumps([{"image": "a.jpg", "query": "q", "outputs": "Fact."}]))
    config_path = tmp_path / "c.yaml"
    source = f"{{type: reason_seg, dir: {tmp_path}, split: train, explain_first: true"
    config_path.write_text(f"run_dir: {tmp_path / 'run'}\nrecipe: lisa\nmodel: {{base: some/model}}\n"
                           f"data:\n  - {source}}}\n"
                           f"  - {source}, explanatory_path: {tmp_path / 'explanatory' / 'train-facts.json'}}}\n")
    config = load_config(config_path)
    (default,), (chosen,) = (build_group(source, config) for source in config.data)
    assert isinstance(default, ReasonSegTrain) and default.explain_first
    assert default.explanations == {"a.jpg": "Why."} and chosen.explanations == {"a.jpg": "Fact."}
