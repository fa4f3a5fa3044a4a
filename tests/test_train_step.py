"""One training step: exactly the intended parameters get gradients, and the loss falls on a
fixed batch."""

from __future__ import annotations

import pytest
import torch

from _training import fixed_batch_losses, model_and_training_batch
from lisa.model import vlm as vlm_ops
from lisa.train.config import LoraSection, config_from_dict
from lisa.train.lora import add_lora
from lisa.train.trainable import set_trainable
from lisa.train.trainer import make_optimizer


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    return model_and_training_batch(tmp_path_factory)


def _fresh(setup, full_embeddings: bool):
    model, batch = setup
    model = type(model)(model.config)
    model.load_state_dict(setup[0].state_dict())
    add_lora(model, LoraSection())
    rows = None if full_embeddings else [model.config.seg_token_id]
    set_trainable(model, rows)
    return model.train(), batch


def _nonzero_grad_rows(param: torch.Tensor) -> list[int]:
    return torch.nonzero(param.grad.abs().sum(-1)).flatten().tolist()


@pytest.mark.parametrize("full_embeddings", [False, True])
def test_intended_parameters_get_gradients(setup, full_embeddings: bool) -> None:
    model, batch = _fresh(setup, full_embeddings)
    out = model(batch)
    assert out.num_masks > 0
    out.loss.backward()
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    # The IoU head is part of the (trained) mask decoder but no loss reaches it, as in the official code.
    iou_head = {n for n in trainable if n.startswith("sam.mask_decoder.iou_prediction_head.")}
    assert iou_head and with_grad == trainable - iou_head
    lora = sorted(n for n in trainable if "lora_" in n)
    # LoRA on the LLM's q/v only: 2 layers x (q, v) x (A, B); never CLIP or SAM.
    assert len(lora) == 8 and all(n.startswith("vlm.model.language_model.layers.") for n in lora)
    assert all(("q_proj" in n) or ("v_proj" in n) for n in lora)
    others = trainable - set(lora)
    embed = "vlm.model.language_model.embed_tokens.weight"
    head = "vlm.lm_head.weight"
    assert {embed, head} <= others
    rest = others - {embed, head}
    assert rest and all(n.startswith(("sam.mask_decoder.", "seg_head.")) for n in rest)
    decoder = {n for n, _ in model.named_parameters() if n.startswith("sam.mask_decoder.")}
    assert decoder <= trainable
    assert not any(n.startswith(("sam.vision_encoder", "sam.prompt_encoder", "vlm.model.vision_tower",
                                 "vlm.model.multi_modal_projector")) for n in trainable)
    seg = model.config.seg_token_id
    params = dict(model.named_parameters())
    if full_embeddings:
        assert len(_nonzero_grad_rows(params[head])) > 1
    else:
        assert _nonzero_grad_rows(params[embed]) == [seg]
        assert _nonzero_grad_rows(params[head]) == [seg]
    # LoRA B starts at zero, so the A matrices see no gradient on the first step; B does.
    assert all(params[n].grad.abs().sum() > 0 for n in lora if "lora_B" in n)


def test_frozen_rows_stay_exact(setup) -> None:
    model, batch = _fresh(setup, full_embeddings=False)
    embed = model.vlm.get_input_embeddings().weight
    before = embed.detach().clone()
    config = config_from_dict({"run_dir": "unused", "model": {"build": {}}, "data": [{"type": "jsonl", "dir": "x"}],
                               "optim": {"warmup_steps": 0}})
    optimizer, _ = make_optimizer(model, config)
    for _ in range(2):
        model(batch).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = torch.nonzero((embed.detach() != before).any(-1)).flatten().tolist()
    assert changed == [model.config.seg_token_id]


def test_loss_falls_on_fixed_batch(setup) -> None:
    model, batch = _fresh(setup, full_embeddings=False)
    losses = fixed_batch_losses(model, batch, steps=25)
    assert losses[-1] < 0.8 * losses[0], losses


def test_shared_prefix_forward_matches_plain_forward(setup) -> None:
    """The system prompt runs once for the whole batch; loss and every gradient stay the same."""
    model, batch = _fresh(setup, full_embeddings=True)
    model.eval()  # no LoRA dropout: both passes must see the same function
    torch.manual_seed(1)
    with torch.no_grad():  # LoRA B starts at zero: make the adapters act, so their grads are tested too
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    prefix = vlm_ops.shared_prefix_length(batch.input_ids, batch.attention_mask, model.config.image_token_id)
    assert batch.input_ids.shape[0] > 1 and prefix > 10
    assert (batch.attention_mask == 0).any(), "the batch should hold padded rows"
    results = []
    for share in (False, True):
        model.zero_grad()
        out = model(batch, share_prefix=share)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out, grads))
    (plain, plain_grads), (shared, shared_grads) = results
    torch.testing.assert_close(shared.loss, plain.loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(shared.mask_logits, plain.mask_logits):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert shared_grads.keys() == plain_grads.keys()
    assert any("lora_A" in n for n in shared_grads)
    for name in plain_grads:
        torch.testing.assert_close(shared_grads[name], plain_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_gradient_checkpointing_runs_without_a_shared_prefix(setup) -> None:
    """Checkpointed layers drop caches, so the shared-prefix path must not be taken."""
    model, batch = _fresh(setup, full_embeddings=False)
    model.eval()
    plain = model(batch, share_prefix=False).loss
    model.vlm.model.language_model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    checkpointed = model(batch)
    checkpointed.loss.backward()
    torch.testing.assert_close(checkpointed.loss, plain, rtol=1e-5, atol=1e-6)


def test_shared_prefix_length_stops_at_differences_images_and_padding() -> None:
    image = 5
    ids = torch.tensor([[1, 7, 8, 9, 5, 5, 3], [1, 7, 8, 9, 5, 5, 4]])
    ones = torch.ones_like(ids)
    assert vlm_ops.shared_prefix_length(ids, ones, image) == 4  # stops before the image span
    assert vlm_ops.shared_prefix_length(ids, ones, image_token_id=99) == 6  # then at the first difference
    same = torch.tensor([[1, 7, 8], [1, 7, 8]])
    assert vlm_ops.shared_prefix_length(same, torch.ones_like(same), image) == 2  # one token left per row
    padded = torch.tensor([[1, 7, 0, 0], [1, 7, 0, 0]])  # same ids, but the pad is no shared prompt
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 0]])
    assert vlm_ops.shared_prefix_length(padded, mask, image) == 2
    assert vlm_ops.shared_prefix_length(ids[:1], ones[:1], image) == 0  # a single row: nothing to share
