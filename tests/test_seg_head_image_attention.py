"""The seg head's optional read of the image tokens (SegHead(image_attention=True)): off, the
head is LISA's; on, each [SEG]'s prompt depends on its own image's tokens, through every path."""

from __future__ import annotations

import pytest
import torch
from _training import tiny_folder_with_image_read

from lisa.model.lisa import LisaModel
from lisa.model.seg_head import ImageAttention, SegHead
from lisa.train.seg_warmup import warmup_forward
from lisa.train.trainable import set_trainable


def test_attention_is_the_softmax_weighted_value_of_the_matching_tokens() -> None:
    torch.manual_seed(0)
    read = ImageAttention(4, 3, 2)
    state, tokens = torch.randn(2, 4), torch.randn(2, 5, 3)
    scores = torch.stack([read.query(state[n]) @ read.key(tokens[n]).T for n in range(2)]) / 2.0  # sqrt(4)
    expected = torch.stack([scores[n].softmax(-1) @ read.value(tokens[n]) for n in range(2)])
    assert torch.allclose(read(state, tokens), expected, atol=1e-6)


def test_without_attention_the_head_ignores_tokens_and_with_it_needs_them() -> None:
    torch.manual_seed(0)
    plain = SegHead(8, 4)
    assert plain.image_attention is None
    hidden = torch.randn(3, 8)
    assert torch.equal(plain(hidden), plain(hidden, torch.randn(3, 6, 8)))
    reading = SegHead(8, 4, image_attention=True)
    with pytest.raises(ValueError, match="image_tokens"):
        reading(hidden)
    tokens = torch.randn(3, 6, 8)
    moved = tokens.clone()
    moved[0] = moved[0].roll(1, dims=0) * 2  # another image for the first state only
    out, out_moved = reading(hidden, tokens), reading(hidden, moved)
    assert not torch.allclose(out[0], out_moved[0]) and torch.equal(out[1:], out_moved[1:])


def test_training_forward_and_warmup_read_each_seg_states_own_image(model_with_read_and_batch) -> None:
    model, batch = model_with_read_and_batch
    set_trainable(model, None)
    model.train().zero_grad(set_to_none=True)
    out = model(batch)
    assert out.num_masks > 0
    out.loss.backward()
    read = model.seg_head.image_attention
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in read.parameters())
    model.zero_grad(set_to_none=True)
    warmup_forward(model, batch, weight=1.0).loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in read.parameters())
    model.zero_grad(set_to_none=True)
    # Swapping the two images' tokens changes the prompts of the [SEG]s (each reads its own image).
    model.eval()
    embeds, _, features = model.conversation_inputs_and_features(batch.input_ids, batch.vlm_pixels, batch.image_index)
    hidden = model.conversation_hidden(embeds, batch.input_ids, batch.attention_mask, True)
    rows, cols = model.seg_positions(batch.input_ids)
    seg_image = batch.image_index[rows]
    with torch.no_grad():
        prompts = model.project_seg(hidden[rows, cols], seg_image, features)
        swapped = model.project_seg(hidden[rows, cols], seg_image, features[::-1])
        expected = model.seg_head(hidden[rows, cols], torch.stack([features[int(i)] for i in seg_image]))
    assert torch.allclose(prompts, expected) and not torch.allclose(prompts, swapped)


def test_saved_model_keeps_the_read_and_the_pipeline_uses_it(tmp_path) -> None:
    from lisa.inference.pipeline import LisaPipeline

    folder, base = tiny_folder_with_image_read(tmp_path / "m")
    loaded = LisaModel.from_pretrained(folder)
    assert loaded.config.seg_head_image_attention and loaded.seg_head.image_attention is not None
    for (name, a), (_, b) in zip(base.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    pipe = LisaPipeline.from_pretrained(folder, device="cpu", dtype="float32")
    image = (torch.rand(40, 50, 3) * 255).byte().numpy()
    forced = pipe(image, "the red circle", answers="[SEG].")
    assert forced.masks.shape == (1, 40, 50)
    # The read matters for the mask: zeroing its output layer changes the prompt, hence the mask logits.
    with torch.no_grad():
        pipe.model.seg_head.image_attention.value[-1].weight.mul_(0)
        pipe.model.seg_head.image_attention.value[-1].bias.add_(5.0)
    changed = pipe(image, "the red circle", answers="[SEG].")
    assert not torch.equal(torch.as_tensor(forced.scores), torch.as_tensor(changed.scores))


def test_target_cell_shares_are_the_targets_share_of_each_cell() -> None:
    from lisa.model.losses import target_cell_shares

    first = torch.zeros(2, 8, 8, dtype=torch.uint8)
    first[0, 0:4, 0:4] = 1  # the top-left cell of a 2x2 grid, whole
    first[1, 0:4, 0:8] = 1  # the top row
    first[1, 4:6, 6:8] = 1  # and a quarter of the bottom-right cell
    second = torch.zeros(1, 8, 8, dtype=torch.uint8)  # no target
    second[0, 0, 0] = 255  # ignore label: not target
    cells = target_cell_shares([first, second], 2)
    assert torch.allclose(cells, torch.tensor([[1.0, 0, 0, 0], [1 / 2.25, 1 / 2.25, 0, 0.25 / 2.25], [0, 0, 0, 0]]))


def test_warmup_attention_loss_is_the_cross_entropy_against_the_target_cells(model_with_read_and_batch) -> None:
    from lisa.model.losses import target_cell_shares
    from lisa.train.seg_warmup import target_boxes

    model, batch = model_with_read_and_batch
    set_trainable(model, None)
    model.eval()  # batch-norm statistics fixed: both calls see the same head
    plain = warmup_forward(model, batch, weight=1.0)
    with_attention = warmup_forward(model, batch, weight=1.0, attention_weight=2.0)
    embeds, _, features = model.conversation_inputs_and_features(batch.input_ids, batch.vlm_pixels, batch.image_index)
    hidden = model.conversation_hidden(embeds, batch.input_ids, batch.attention_mask, True)
    rows, cols = model.seg_positions(batch.input_ids)
    _, present = target_boxes(batch)
    tokens = torch.stack([features[int(i)] for i in batch.image_index[rows]])
    read = model.seg_head.image_attention
    weights = read.weights(hidden[rows, cols], tokens)[present]
    grid = int(round(weights.shape[-1] ** 0.5))
    expected = -(target_cell_shares(batch.masks, grid)[present] * weights.log()).sum(-1).mean()
    assert torch.allclose(with_attention.loss, plain.loss + 2.0 * expected, atol=1e-5)
    model.train()


def test_images_with_different_token_counts_are_refused_clearly(model_with_read_and_batch) -> None:
    model, _ = model_with_read_and_batch
    hidden = torch.randn(2, model.config.hidden_size)
    features = [torch.randn(4, model.config.hidden_size), torch.randn(6, model.config.hidden_size)]
    with pytest.raises(ValueError, match="same token count"):
        model.project_seg(hidden, torch.tensor([0, 1]), features)


def test_forward_attention_weight_adds_the_attention_cross_entropy_per_mask(model_with_read_and_batch) -> None:
    from lisa.model.losses import target_cell_shares

    model, batch = model_with_read_and_batch
    set_trainable(model, None)
    model.eval()
    plain = model(batch)
    weighted = model(batch, attention_weight=0.5)
    embeds, _, features = model.conversation_inputs_and_features(batch.input_ids, batch.vlm_pixels, batch.image_index)
    hidden = model.conversation_hidden(embeds, batch.input_ids, batch.attention_mask, True)
    rows, cols = model.seg_positions(batch.input_ids)
    tokens = torch.stack([features[int(i)] for i in batch.image_index[rows]])
    weights = model.seg_head.image_attention.weights(hidden[rows, cols], tokens)
    cells = target_cell_shares(batch.masks, int(round(weights.shape[-1] ** 0.5)))
    expected = -(cells * weights.log()).sum() / plain.num_masks
    assert torch.allclose(weighted.loss, plain.loss + 0.5 * expected, atol=1e-5)
    assert torch.allclose(weighted.mask_loss, plain.mask_loss + 0.5 * expected, atol=1e-5)
    assert torch.equal(plain.loss, model(batch, attention_weight=0.0).loss)
    model.train()
