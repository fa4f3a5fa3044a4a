"""Loss values on hand-made cases, and the teacher-forced forward on mixed batches."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from lisa.data.collate import Collator
from lisa.data.sample import Conversation, Sample
from lisa.model.losses import mask_bce_sum, mask_dice_sum, text_ce_loss
from lisa.model.prompting import IGNORE_INDEX


def test_bce_of_zero_logits_is_log2_per_mask() -> None:
    logits = torch.zeros(3, 4, 5)
    targets = torch.randint(0, 2, (3, 4, 5)).float()
    assert mask_bce_sum(logits, targets).item() == pytest.approx(3 * math.log(2), rel=1e-6)


def test_bce_hand_computed() -> None:
    logits = torch.tensor([[[2.0, -1.0]]])
    targets = torch.tensor([[[1.0, 1.0]]])
    expected = (math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(1.0))) / 2
    assert mask_bce_sum(logits, targets).item() == pytest.approx(expected, rel=1e-6)


def test_dice_hand_computed_with_lisa_scale_and_eps() -> None:
    logits = torch.tensor([[[0.0, 0.0], [100.0, -100.0]]])  # probs 0.5, 0.5, 1, 0
    targets = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    p = [0.5, 0.5, 1.0, 0.0]
    g = [1, 0, 1, 0]
    numerator = 2 * sum(pi / 1000 * gi for pi, gi in zip(p, g))
    denominator = sum(pi / 1000 for pi in p) + sum(gi / 1000 for gi in g)
    expected = 1 - (numerator + 1e-6) / (denominator + 1e-6)
    assert mask_dice_sum(logits, targets).item() == pytest.approx(expected, rel=1e-5)


def test_dice_of_empty_target_and_empty_prediction_is_near_zero() -> None:
    logits = torch.full((1, 8, 8), -50.0)
    assert mask_dice_sum(logits, torch.zeros(1, 8, 8)).item() == pytest.approx(0.0, abs=1e-6)


def test_ce_is_token_mean_over_supervised_positions() -> None:
    logits = torch.zeros(1, 3, 4)
    logits[0, 0, 2] = math.log(3.0)  # p(token 2) = 3/6 at step 0
    labels = torch.tensor([[IGNORE_INDEX, 2, 1]])
    expected = (-math.log(3 / 6) - math.log(1 / 4)) / 2
    assert text_ce_loss(logits, labels, head=lambda x: x).item() == pytest.approx(expected, rel=1e-6)


def test_ce_runs_the_head_only_where_needed_with_the_full_logits_result() -> None:
    torch.manual_seed(0)
    hidden = torch.randn(3, 7, 8, requires_grad=True)
    head = torch.nn.Linear(8, 11, bias=False)
    labels = torch.randint(0, 11, (3, 7))
    labels[:, :4] = IGNORE_INDEX
    labels[1] = IGNORE_INDEX
    seen: list[int] = []

    def counting_head(x: torch.Tensor) -> torch.Tensor:
        seen.append(x.shape[0])
        return head(x)

    loss = text_ce_loss(hidden, labels, counting_head)
    full = torch.nn.functional.cross_entropy(
        head(hidden)[:, :-1].reshape(-1, 11), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
    assert seen == [int((labels[:, 1:] != IGNORE_INDEX).sum())] == [6]
    torch.testing.assert_close(loss, full)
    none = torch.full((2, 5), IGNORE_INDEX)
    assert text_ce_loss(hidden[:2, :5], none, head).item() == 0.0


def _write_image(path, rng, size=(48, 64)) -> None:
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)


def _mask(rng, n, size=(48, 64)) -> np.ndarray:
    return (rng.random((n, *size)) > 0.5).astype(np.uint8)


@pytest.fixture()
def mixed_batch(tiny_pipeline, tmp_path, rng):
    _write_image(tmp_path / "a.png", rng)
    _write_image(tmp_path / "b.png", rng, (30, 20))
    samples = [
        Sample(tmp_path / "a.png", [
            Conversation([("find the circle", "Sure, [SEG].")], _mask(rng, 1)),
            Conversation([("circle and square?", "[SEG] and [SEG].")], _mask(rng, 2)),
            Conversation([("how many circles?", "Three.")], np.zeros((0, 48, 64), np.uint8)),
        ]),
        Sample(tmp_path / "b.png", [
            Conversation([("what is it?", "A star."), ("segment it", "It is [SEG].")], _mask(rng, 1, (30, 20))),
        ]),
    ]
    pipe = tiny_pipeline
    collate = Collator(pipe.builder, pipe.image_processor, pipe.model.config.sam_image_size)
    return collate(samples)


def test_forward_handles_mixed_batch(tiny_pipeline, mixed_batch) -> None:
    model = tiny_pipeline.model
    output = model(mixed_batch)
    assert output.num_masks == 4
    assert [m.shape for m in output.mask_logits] == [(3, 48, 64), (1, 30, 20)]
    assert torch.isfinite(output.loss)
    expected = output.ce_loss + 2.0 * output.bce_loss + 0.5 * output.dice_loss
    assert output.loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_mask_losses_match_per_mask_formula(tiny_pipeline, mixed_batch) -> None:
    output = tiny_pipeline.model(mixed_batch)
    targets = [torch.cat([m.float() for m in mixed_batch.masks[:3]]), mixed_batch.masks[3].float()]
    bce = sum(mask_bce_sum(l, t) for l, t in zip(output.mask_logits, targets)) / 4
    dice = sum(mask_dice_sum(l, t) for l, t in zip(output.mask_logits, targets)) / 4
    assert output.bce_loss.item() == pytest.approx(bce.item(), rel=1e-5)
    assert output.dice_loss.item() == pytest.approx(dice.item(), rel=1e-5)


def test_text_only_batch_has_zero_mask_losses(tiny_pipeline, tmp_path, rng) -> None:
    _write_image(tmp_path / "a.png", rng)
    pipe = tiny_pipeline
    collate = Collator(pipe.builder, pipe.image_processor, pipe.model.config.sam_image_size)
    batch = collate([Sample(tmp_path / "a.png", [Conversation([("colour?", "Red.")], np.zeros((0, 48, 64), np.uint8))])])
    output = pipe.model(batch)
    assert output.num_masks == 0 and output.bce_loss.item() == 0.0 and output.dice_loss.item() == 0.0
    assert output.ce_loss.item() > 0


def test_ignore_pixels_are_background_in_training(tiny_pipeline, mixed_batch) -> None:
    model = tiny_pipeline.model
    plain = model(mixed_batch)
    mixed_batch.masks[0] = torch.where(mixed_batch.masks[0] == 0, torch.tensor(255, dtype=torch.uint8), mixed_batch.masks[0])
    with_ignore = model(mixed_batch)
    assert with_ignore.bce_loss.item() == pytest.approx(plain.bce_loss.item(), rel=1e-6)


def test_mask_count_mismatch_is_an_error(tiny_pipeline, mixed_batch) -> None:
    mixed_batch.masks[0] = mixed_batch.masks[0][:0]
    with pytest.raises(ValueError, match="target masks"):
        tiny_pipeline.model(mixed_batch)


def test_gradients_reach_seg_head_decoder_and_language_model(tiny_pipeline, mixed_batch) -> None:
    model = tiny_pipeline.model
    model.zero_grad()
    model.sam.vision_encoder.requires_grad_(False)  # LISA's frozen image encoder
    try:
        model(mixed_batch).loss.backward()
    finally:
        model.sam.vision_encoder.requires_grad_(True)
    assert model.seg_head.fc1.weight.grad.abs().sum() > 0
    assert model.sam.mask_decoder.mask_tokens.weight.grad.abs().sum() > 0
    language = model.vlm.model.language_model
    assert language.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
    assert model.sam.vision_encoder.patch_embed.projection.weight.grad is None  # frozen: runs without grad
    model.zero_grad()
