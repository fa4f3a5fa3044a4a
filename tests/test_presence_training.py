"""Training the presence head with the model (``presence_weight``): its BCE against "the target
is not empty" for every [SEG], empty targets out of the mask loss, and a gradient that reaches
the [SEG] state and the read but not the mask decoder."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from _training import seg_inputs, tiny_folder_with_image_read

from lisa.errors import LisaError
from lisa.model import sam as sam_ops
from lisa.model.lisa import area_shares
from lisa.model.losses import mask_bce_sum, mask_dice_sum
from lisa.model.presence import PresenceHead
from lisa.train.config import config_from_dict

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def model_and_batch(model_with_read_and_batch):
    """The shared tiny model with a presence head, and its batch reordered so that the [SEG]s of
    one image are not neighbours (images 0, 1, 0), the last one's target emptied (absent)."""
    model, batch = model_with_read_and_batch
    torch.manual_seed(5)
    model.presence_head = PresenceHead.reading(model.seg_head, model.config.hidden_size, 8)
    order = [0, 2, 1]
    assert batch.image_index[order].tolist() == [0, 1, 0] and all(m.shape[0] == 1 for m in batch.masks)
    masks = [batch.masks[i].clone() for i in order]
    assert all((m == 1).any() for m in masks)
    masks[2].zero_()
    reordered = replace(batch, input_ids=batch.input_ids[order], attention_mask=batch.attention_mask[order],
                        labels=batch.labels[order], image_index=batch.image_index[order], masks=masks)
    model.eval()  # the same states in both computations (no dropout; the tiny head has no batch norm)
    yield model, reordered
    model.presence_head = None
    model.zero_grad(set_to_none=True)


def _per_seg(model, batch):
    """In conversation order, one [SEG] each: the state's mask logits, its score, IoU estimate,
    area share, and the presence head's log-odds, computed [SEG] by [SEG]."""
    states, image, features, embeddings = seg_inputs(model, batch)
    rows = []
    for n in range(states.shape[0]):
        i = int(image[n])
        logits, iou = model.masks_from_hidden(states[n:n + 1], torch.zeros(1, dtype=torch.long), embeddings[i:i + 1],
                                              [batch.resized_sizes[i]], [batch.original_sizes[i]], [features[i]])
        rows.append((logits[0][0], iou[0][0]))
    logits = [r[0] for r in rows]
    scores = torch.stack([sam_ops.mask_scores(m[None])[0] for m in logits])
    ious = torch.stack([r[1] for r in rows])
    shares = torch.stack([area_shares(m[None])[0] for m in logits])
    log_odds = model.presence_log_odds(states, image, features, scores, ious, shares)
    return logits, log_odds


def test_the_presence_loss_is_the_heads_bce_against_the_target_being_there(model_and_batch) -> None:
    model, batch = model_and_batch
    with torch.no_grad():
        out = model(batch, presence_weight=1.0)
        _, log_odds = _per_seg(model, batch)
    expected = F.binary_cross_entropy_with_logits(log_odds, torch.tensor([1.0, 1.0, 0.0]))
    assert out.presence_loss is not None
    assert torch.allclose(out.presence_loss, expected, atol=1e-5)
    assert model(batch).presence_loss is None  # presence_weight 0: no presence loss


def test_an_empty_target_counts_in_no_mask_loss_when_presence_is_trained(model_and_batch) -> None:
    model, batch = model_and_batch
    with torch.no_grad():
        trained = model(batch, presence_weight=1.0)
        plain = model(batch)
        logits, _ = _per_seg(model, batch)
    targets = torch.stack([(m[0] == 1).float() for m in batch.masks])
    present = [0, 1]
    expected_bce = mask_bce_sum(torch.stack([logits[i] for i in present]), targets[present]) / 2
    expected_dice = mask_dice_sum(torch.stack([logits[i] for i in present]), targets[present]) / 2
    assert torch.allclose(trained.bce_loss, expected_bce, atol=1e-5)
    assert torch.allclose(trained.dice_loss, expected_dice, atol=1e-5)
    # Without presence training the empty target is a mask to learn, as before (3 masks).
    all_bce = mask_bce_sum(torch.stack(logits), targets) / 3
    assert torch.allclose(plain.bce_loss, all_bce, atol=1e-5)
    assert torch.allclose(trained.loss, plain.loss - plain.bce_loss * model.config.bce_weight
                          - plain.dice_loss * model.config.dice_weight + trained.bce_loss * model.config.bce_weight
                          + trained.dice_loss * model.config.dice_weight + trained.presence_loss, atol=1e-4)


def test_the_presence_gradient_reaches_the_state_and_the_read_but_not_the_decoder(model_with_read_and_batch) -> None:
    model, batch = model_with_read_and_batch  # every target present: the mask losses are the same with and without
    torch.manual_seed(5)
    model.presence_head = PresenceHead.reading(model.seg_head, model.config.hidden_size, 8)
    model.eval()
    try:
        grads = []
        for weight in (0.0, 1.0):
            model.zero_grad(set_to_none=True)
            model(batch, presence_weight=weight).loss.backward()
            grads.append({n: None if p.grad is None else p.grad.clone() for n, p in model.named_parameters()})
        plain, trained = grads
        decoder = [n for n in plain if n.startswith("sam.mask_decoder.") and plain[n] is not None]
        assert decoder and all(torch.allclose(plain[n], trained[n], atol=1e-6) for n in decoder)
        query = "seg_head.image_attention.query.weight"
        assert not torch.allclose(plain[query], trained[query])
        layer = next(n for n in plain if n.startswith("vlm.model.language_model.layers.") and plain[n] is not None)
        assert not torch.allclose(plain[layer], trained[layer])  # through the [SEG] state into the LM
        head = [n for n in trained if n.startswith("presence_head.")]
        assert head and all(plain[n] is None and trained[n].abs().sum() > 0 for n in head)
    finally:
        model.presence_head = None
        model.zero_grad(set_to_none=True)


def test_presence_weight_without_a_presence_head_is_refused(model_with_read_and_batch) -> None:
    model, batch = model_with_read_and_batch
    assert model.presence_head is None
    with pytest.raises(LisaError, match="presence_weight needs a model with a presence head"):
        model(batch, presence_weight=1.0)


def test_the_trainer_trains_and_logs_the_presence_head(tmp_path) -> None:
    from lisa.model.lisa import LisaModel
    from lisa.train.trainer import train

    folder, model = tiny_folder_with_image_read(tmp_path / "base")
    torch.manual_seed(5)
    model.presence_head = PresenceHead.reading(model.seg_head, model.config.hidden_size, 8)
    model.presence_head.threshold.fill_(-1.5)
    model.config = replace(model.config, presence_head_width=8)
    model.save_pretrained(folder)
    data = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    data.update(run_dir=str(tmp_path / "run"), save_every=100, val=None, log_every=1, presence_weight=1.0,
                model={"base": str(folder), "precision": "auto"})
    data["optim"].update(max_steps=2, warmup_steps=0)
    run = train(config_from_dict(data), progress=False)
    logged = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged if "presence" in e] == [1, 2]
    assert all(e["presence"] > 0 for e in logged if "presence" in e)
    from lisa.train.export import export

    exported = LisaModel.from_pretrained(export(run, tmp_path / "model"))
    assert exported.presence_head is not None and float(exported.presence_head.threshold) == -1.5
    assert not torch.equal(exported.presence_head.net[0].weight, model.presence_head.net[0].weight)


def test_the_presence_head_does_not_update_the_seg_heads_batch_statistics_again(model_with_read_and_batch) -> None:
    from lisa.train.model_setup import rebuild_seg_head

    model, batch = model_with_read_and_batch
    before = model.seg_head, model.config
    torch.manual_seed(2)
    rebuild_seg_head(model, "batch", image_attention=True)
    model.presence_head = PresenceHead.reading(model.seg_head, model.config.hidden_size, 8)
    model.train()
    try:
        statistics = []
        for weight in (0.0, 1.0):
            model.seg_head.norm.reset_running_stats()
            model(batch, presence_weight=weight)
            norm = model.seg_head.norm
            statistics.append((norm.running_mean.clone(), norm.running_var.clone(), int(norm.num_batches_tracked)))
        assert statistics[0][2] == statistics[1][2] == 1
        assert torch.equal(statistics[0][0], statistics[1][0]) and torch.equal(statistics[0][1], statistics[1][1])
    finally:
        (model.seg_head, model.config), model.presence_head = before, None
        model.eval()


def test_the_threshold_declines_at_most_the_allowed_share_of_present_rows() -> None:
    from _recipe_scripts import load_recipe_script

    threshold_for = load_recipe_script("fit_presence_head").threshold_for
    present = torch.tensor([2.0, -3.0, 0.5, -1.0, 4.0, 1.0, -0.5, 3.0])  # sorted: -3 -1 -0.5 0.5 1 2 3 4
    assert threshold_for(present, 0.25) == -0.5  # 2 of 8 lie below it
    assert int((present < threshold_for(present, 0.25)).sum()) == 2
    assert threshold_for(present, 0.1) == -3.0  # 0.8 of a row allowed: none declined
    assert threshold_for(present, 0.0) == -3.0
