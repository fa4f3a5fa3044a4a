"""The presence head (lisa.model.presence): its features, its MLP, and the masks it declines:
empty, score 0, ``present`` False, while the masks it keeps are the model's own bit for bit."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from _training import tiny_folder_with_image_read

from lisa.errors import LisaError
from lisa.model.config import LisaConfig
from lisa.model.lisa import LisaModel, Segmentation
from lisa.model.presence import PresenceHead, presence_feature_size, presence_features

TWO_MASKS = "[SEG] and [SEG]."


def test_features_are_the_state_the_weighted_tokens_the_strongest_token_and_the_scalars() -> None:
    state = torch.tensor([[1.0, -1.0]])
    tokens = torch.tensor([[[2.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 6.0]]])
    scores = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))  # softmax: 0.5, 0.25, 0.25
    features = presence_features(state, scores, tokens, torch.tensor([0.8]), torch.tensor([0.6]), torch.tensor([0.1]))
    assert features.shape == (1, presence_feature_size(2, 3))
    expected = torch.tensor([
        1.0, -1.0,  # the state
        1.0, 1.0, 1.5,  # 0.5 * [2, 0, 0] + 0.25 * [0, 4, 0] + 0.25 * [0, 0, 6]
        2.0, 0.0, 0.0,  # the token of the peak weight
        float(np.log(0.5)), 0.0,  # strongest match; logsumexp of log-probabilities is log 1
        0.5, 0.8, 0.6, 0.1, 1.0 / 3.0,  # peak weight, mask score, IoU estimate, area share, 1 / tokens
    ])
    assert torch.allclose(features[0], expected, atol=1e-6)


def test_the_head_standardises_then_applies_its_mlp() -> None:
    head = PresenceHead(2, width=1)
    with torch.no_grad():
        head.mean.copy_(torch.tensor([1.0, 2.0]))
        head.std.copy_(torch.tensor([2.0, 4.0]))
        head.net[0].weight.copy_(torch.tensor([[1.0, -1.0]]))
        head.net[0].bias.zero_()
        head.net[2].weight.fill_(3.0)
        head.net[2].bias.fill_(-1.0)
        head.threshold.fill_(0.5)
    features = torch.tensor([[5.0, 2.0], [1.0, 6.0]])  # standardised: [2, 0] and [0, 1]
    # ReLU(2 - 0) * 3 - 1 = 5; ReLU(0 - 1) * 3 - 1 = -1
    assert torch.allclose(head(features), torch.tensor([5.0, -1.0]))
    assert head.keeps(head(features)).tolist() == [True, False]


def _pipeline_with_head(tmp_path, threshold: float | None):
    from lisa.inference.pipeline import LisaPipeline

    folder, _ = tiny_folder_with_image_read(tmp_path / "m")
    pipe = LisaPipeline.from_pretrained(folder, device="cpu", dtype="float32")
    if threshold is not None:
        model = pipe.model
        torch.manual_seed(3)
        model.presence_head = PresenceHead.reading(model.seg_head, model.config.hidden_size, width=8).eval()
        model.presence_head.threshold.fill_(threshold)
        model.config = replace(model.config, presence_head_width=8)
    return pipe


def _answer(pipe, image) -> tuple[object, Segmentation]:
    """The pipeline's result for a forced two-[SEG] answer, and the model's Segmentation behind it."""
    captured: list[Segmentation] = []
    original = pipe.model._segment

    def capture(*args, **kwargs):
        captured.append(original(*args, **kwargs))
        return captured[-1]

    pipe.model._segment = capture
    try:
        result = pipe(image, "the red circle and the blue square", answers=TWO_MASKS)
    finally:
        del pipe.model._segment
    return result, captured[0]


@pytest.fixture()
def image() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)


def test_a_head_that_keeps_everything_changes_no_mask(tmp_path, image) -> None:
    plain, plain_segmentation = _answer(_pipeline_with_head(tmp_path / "a", None), image)
    kept, kept_segmentation = _answer(_pipeline_with_head(tmp_path / "b", float("-inf")), image)
    assert plain.present is None and plain_segmentation.presence is None
    assert kept.present.tolist() == [True, True]
    assert kept_segmentation.presence[0].shape == (2,)
    assert torch.equal(plain_segmentation.mask_logits[0], kept_segmentation.mask_logits[0])
    assert np.array_equal(plain.scores, kept.scores)


def test_a_mask_below_the_threshold_is_declined_and_the_other_kept(tmp_path, image) -> None:
    _, plain = _answer(_pipeline_with_head(tmp_path / "a", None), image)
    _, scored = _answer(_pipeline_with_head(tmp_path / "b", float("-inf")), image)
    low, high = scored.presence[0].sort().values.tolist()
    assert low < high  # two different states, two different verdicts
    result, segmentation = _answer(_pipeline_with_head(tmp_path / "c", (low + high) / 2), image)
    kept = int(scored.presence[0].argmax())
    declined = 1 - kept
    assert result.present.tolist() == [index == kept for index in range(2)]
    assert torch.equal(segmentation.mask_logits[0][kept], plain.mask_logits[0][kept])
    assert not result.masks[declined].any() and result.scores[declined] == 0.0
    assert (segmentation.mask_logits[0][declined] == torch.finfo(torch.float32).min).all()
    assert torch.equal(segmentation.presence[0], scored.presence[0])  # log-odds of every mask, kept or not


def test_a_saved_head_loads_back_with_its_threshold(tmp_path, image) -> None:
    from lisa.inference.pipeline import LisaPipeline

    pipe = _pipeline_with_head(tmp_path, 0.25)
    folder = tmp_path / "m"
    pipe.model.save_pretrained(folder)
    assert json.loads((folder / "lisa_config.json").read_text())["presence_head_width"] == 8
    loaded = LisaPipeline.from_pretrained(folder, device="cpu", dtype="float32")
    assert float(loaded.model.presence_head.threshold) == 0.25
    first, first_segmentation = _answer(pipe, image)
    again, again_segmentation = _answer(loaded, image)
    assert torch.equal(first_segmentation.presence[0], again_segmentation.presence[0])
    assert first.present.tolist() == again.present.tolist()


def test_a_folder_without_a_head_does_not_write_the_key(tmp_path) -> None:
    folder, _ = tiny_folder_with_image_read(tmp_path / "m")
    assert "presence_head_width" not in json.loads((folder / "lisa_config.json").read_text())
    assert LisaModel.from_pretrained(folder).presence_head is None


def test_a_presence_head_needs_a_read_of_the_image_tokens(tmp_path) -> None:
    from lisa.model.build import write_tiny_model

    folder = write_tiny_model(tmp_path / "m")
    data = json.loads((folder / "lisa_config.json").read_text())
    data["presence_head_width"] = 8
    (folder / "lisa_config.json").write_text(json.dumps(data))
    with pytest.raises(LisaError, match="presence_head_width needs a seg head that reads the image tokens"):
        LisaConfig.load(folder)


def test_outputs_say_which_masks_were_judged_absent() -> None:
    from lisa.inference.commands import _empty_note
    from lisa.inference.pipeline import SegmentResult
    from lisa.inference.render import mask_records
    from lisa.serve.payload import result_payload
    from lisa.serve.web import mask_label

    masks = np.zeros((3, 4, 5), dtype=bool)
    masks[0, 1:3, 2:4] = True  # kept, 4 pixels; mask 1 kept but empty; mask 2 declined
    scores = np.array([0.9, 0.0, 0.0], dtype=np.float32)
    present = np.array([True, True, False])
    records = mask_records(masks, scores, present)
    assert [r["present"] for r in records] == [True, True, False]
    assert [r["area"] for r in records] == [4, 0, 0] and records[0]["bbox"] == [2, 1, 2, 2]
    assert all("present" not in r for r in mask_records(masks, scores))  # a model without a head
    assert _empty_note(masks, present) == " (1 empty, 1 empty: judged absent)"
    assert _empty_note(masks) == " (2 empty)"
    payload = result_payload(np.zeros((4, 5, 3), np.uint8), SegmentResult("[SEG] [SEG] [SEG]", masks, scores, {}, present),
                             overlay=False)
    assert [m["present"] for m in payload["masks"]] == [True, True, False]
    assert mask_label(2, 0.0, present=False) == "mask 3 (green, judged absent, empty)"
    assert mask_label(0, 0.9) == "mask 1 (red, score 0.90)"


def test_images_of_different_sizes_in_one_call(tmp_path, image) -> None:
    """The head's area shares are taken per mask: masks of images of different sizes do not stack."""
    pipe = _pipeline_with_head(tmp_path, float("-inf"))
    other = np.random.default_rng(1).integers(0, 256, (30, 70, 3), dtype=np.uint8)
    results = pipe([image, other], ["the red circle", "the blue square"], answers=[TWO_MASKS, TWO_MASKS])
    assert [r.masks.shape for r in results] == [(2, 40, 50), (2, 30, 70)]
    assert all(r.present.tolist() == [True, True] for r in results)
