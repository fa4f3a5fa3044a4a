"""The [SEG]-state warm-up: each projected [SEG] state is regressed onto SAM's one-token box
embedding of its target, then the usual mask loss takes over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from _training import model_and_training_batch
import yaml

from lisa.errors import LisaError
from lisa.model.lisa import LisaBatch
from lisa.train.config import config_from_dict
from lisa.train.sam_pretrain import box_token
from lisa.train.seg_warmup import target_boxes, warmup_forward
from lisa.train.trainable import set_trainable

ROOT = Path(__file__).resolve().parents[1]


def _masks_only_batch(masks: list[torch.Tensor], image_index: list[int], resized, original) -> LisaBatch:
    empty = torch.zeros(0)
    return LisaBatch(empty, empty, empty, torch.tensor(image_index), empty, empty, resized, original, masks)


def test_target_boxes_are_in_sam_input_pixels() -> None:
    first = torch.zeros(1, 40, 80, dtype=torch.uint8)
    first[0, 10:20, 30:50] = 1  # rows 10-19, cols 30-49
    first[0, 0, 0] = 255  # ignore: never part of the box
    second = torch.zeros(2, 40, 80, dtype=torch.uint8)
    second[0, 0:40, 0:8] = 1
    # image 0 (40 x 80) resized to 30 x 64 (not SAM's aspect-keeping resize: so that x and y differ)
    boxes, present = target_boxes(_masks_only_batch([first, second], [0, 0], [(30, 64)], [(40, 80)]))
    scale = torch.tensor([0.8, 0.75, 0.8, 0.75])  # x0, y0, x1, y1
    assert torch.allclose(boxes[0], torch.tensor([30.0, 10.0, 50.0, 20.0]) * scale)
    assert torch.allclose(boxes[1], torch.tensor([0.0, 0.0, 8.0, 40.0]) * scale)
    assert present.tolist() == [True, True, False]  # the second conversation's second [SEG] has no target


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    model, batch = model_and_training_batch(tmp_path_factory)
    return model, batch


def test_warmup_loss_is_text_loss_plus_box_token_regression(setup) -> None:
    model, batch = setup
    set_trainable(model, None)
    model.train()
    out = warmup_forward(model, batch, weight=3.0)
    plain = model(batch)
    assert out.num_masks == plain.num_masks > 0
    assert torch.allclose(out.ce_loss, plain.ce_loss)
    # the regression, computed independently: seg head of the [SEG] states vs the targets' box tokens
    embeds = model.embed_conversations(batch.input_ids, batch.vlm_pixels, batch.image_index)
    hidden = model.conversation_hidden(embeds, batch.input_ids, batch.attention_mask, True)
    rows, cols = model.seg_positions(batch.input_ids)
    boxes, present = target_boxes(batch)
    expected = ((model.seg_head(hidden[rows, cols])[present] - box_token(model.sam, boxes[present])) ** 2).mean()
    assert torch.allclose(out.loss, out.ce_loss + 3.0 * expected, atol=1e-5)
    assert float(out.bce_loss) == 0.0 and torch.allclose(out.dice_loss, expected.detach(), atol=1e-6)


def test_warmup_trains_the_seg_head_not_the_mask_decoder(setup) -> None:
    model, batch = setup
    set_trainable(model, None)
    model.train().zero_grad(set_to_none=True)
    warmup_forward(model, batch, weight=1.0).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.seg_head.parameters() if p.requires_grad)
    assert all(p.grad is None for p in model.sam.parameters())
    model.zero_grad(set_to_none=True)


def _smoke(tmp_path: Path, **changes) -> dict:
    data = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    data.update(run_dir=str(tmp_path / "run"), save_every=100, val=None, log_every=1, **changes)
    data["optim"].update(max_steps=4, warmup_steps=1)
    return data


def test_trainer_uses_the_warmup_loss_for_the_first_steps_only(tmp_path) -> None:
    from lisa.train.trainer import train

    train(config_from_dict(_smoke(tmp_path, seg_warmup={"steps": 2, "weight": 1.0})), progress=False)
    logged = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = {e["step"]: e for e in logged if "bce" in e}
    assert steps[1]["bce"] == 0.0 and steps[2]["bce"] == 0.0  # the warm-up: no mask loss
    assert steps[3]["bce"] > 0.0 and steps[4]["bce"] > 0.0  # then BCE + DICE


@pytest.mark.parametrize("section", [{"steps": 0}, {"steps": 5, "weight": 0.0}])
def test_bad_warmup_settings_are_refused(tmp_path, section) -> None:
    with pytest.raises(LisaError, match="seg_warmup"):
        config_from_dict(_smoke(tmp_path, seg_warmup=section))
