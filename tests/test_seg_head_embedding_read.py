"""The seg head's second read (``seg_head_embedding_read``): beside its read of the VLM's image
tokens, a read over the mask backbone's embedding whose output adds to the sparse prompt and
whose map is a second dense prompt with its own vector. It starts silent, reads only its own
image's cells off the padding, is supervised like the first read, and saves and loads."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from _training import SQUASHING_VIEW, sam_view_frames, seg_inputs, tiny_folder_with_image_read

from lisa.errors import LisaError
from lisa.model.lisa import LisaModel
from lisa.model.losses import target_cell_shares
from lisa.model.seg_head import SegHead
from lisa.train.model_setup import add_dense_prompt, add_embedding_read, replace_image_read
from lisa.train.trainable import set_trainable

@pytest.fixture()
def two_read_model(model_with_read_and_batch):
    """The module's model with a token read, its dense prompt and the second read (seed 2)."""
    model, batch = model_with_read_and_batch
    add_dense_prompt(model, SQUASHING_VIEW)
    with torch.no_grad():
        model.seg_head.dense_prompt.fill_(1.0)
    torch.manual_seed(2)
    add_embedding_read(model)
    return model, batch


def test_the_second_read_needs_a_dense_prompting_token_read() -> None:
    with pytest.raises(LisaError, match="beside a dense prompt"):
        SegHead(8, 4, image_attention=True, embedding_read=True)
    with pytest.raises(LisaError, match="beside a dense prompt"):
        SegHead(8, 4, image_attention=True, dense_prompt=True, read="mask_embedding", embedding_read=True)
    head = SegHead(8, 4, image_attention=True, dense_prompt=True, embedding_read=True)
    assert head.embedding_attention is not None and head.embedding_attention.key.in_features == 4  # SAM's width
    assert torch.equal(head.embedding_dense_prompt, torch.zeros(4))


def test_an_added_second_read_starts_silent(model_with_read_and_batch) -> None:
    model, batch = model_with_read_and_batch
    add_dense_prompt(model, SQUASHING_VIEW)
    with torch.no_grad():
        model.seg_head.dense_prompt.fill_(1.0)  # the first read's map counts in the masks
    model.eval()
    states, seg_image, features, embeddings = seg_inputs(model, batch)
    args = (states, seg_image, embeddings, batch.resized_sizes, batch.original_sizes, features)
    with torch.no_grad():
        before, _ = model.masks_from_hidden(*args)
        add_embedding_read(model)
        projection = model.project_seg_with_attention(states, seg_image, features, embeddings, batch.resized_sizes)
        after, _ = model.masks_from_hidden(*args)
    assert model.config.seg_head_embedding_read
    assert projection.embedding_attention is not None
    assert projection.embedding_attention.shape[-1] == embeddings.embeddings.shape[-2] * embeddings.embeddings.shape[-1]
    for a, b in zip(before, after):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="mask embedding"):
        model.project_seg(states, seg_image, features)
    with pytest.raises(LisaError, match="already reads the mask embedding"):
        replace_image_read(model, "mask_embedding")
    model.train()


def test_both_reads_add_to_the_prompts_and_each_map_is_its_own_dense_prompt(two_read_model) -> None:
    model, batch = two_read_model
    head = model.seg_head
    with torch.no_grad():  # wake the second read up: its output layer and its vector
        head.embedding_attention.value[-1].weight.normal_()
        head.embedding_dense_prompt.copy_(torch.linspace(-1.0, 2.0, head.embedding_dense_prompt.shape[0]))
    model.eval()
    states, seg_image, features, embeddings = seg_inputs(model, batch)
    side = model.mask_backbone.image_size
    tall = [(side, side // 2)] * len(batch.resized_sizes)  # the image fills the left half of SAM's view
    grid = tuple(embeddings.embeddings.shape[-2:])
    with torch.no_grad():
        projection = model.project_seg_with_attention(states, seg_image, features, embeddings, tall)
        normalised = head.normalised(states)
        cells = embeddings.embeddings[seg_image].flatten(2).transpose(1, 2)
        inside = torch.zeros(grid)
        inside[:, : grid[1] // 2] = 1
        valid = inside.flatten().bool().expand(states.shape[0], -1)
        expected = head.embedding_attention.weights(normalised, cells, valid)
        assert torch.allclose(projection.embedding_attention, expected)
        assert torch.equal(projection.embedding_attention[:, ~valid[0]], torch.zeros(states.shape[0], int((~valid[0]).sum())))
        # The prompts: the projection, the token read's output and the embedding read's.
        tokens = torch.stack([features[int(i)] for i in seg_image])
        plain = head.fc2(head.act(head.fc1(normalised)))
        token_part = head.image_attention.read(projection.attention, tokens)
        embedding_part = head.embedding_attention.read(expected, cells)
        assert torch.allclose(projection.prompts, plain + token_part + embedding_part, atol=1e-5)
        assert not torch.allclose(projection.prompts, plain + token_part, atol=1e-3)
        # The dense prompt: the first read's map plus the second's, each times its own vector.
        dense = model.dense_prompts(projection, seg_image, embeddings, tall)
        regions = [model.mask_backbone.image_region(tall[int(i)], grid) for i in seg_image]
        first = head.dense_prompts(projection.attention, regions, grid)
        maps = (projection.embedding_attention * (grid[0] * grid[1] // 2)).reshape(-1, 1, *grid)
        second = maps * head.embedding_dense_prompt[None, :, None, None]
        assert torch.allclose(dense, first + second, atol=1e-5)
        assert torch.equal(dense[..., grid[1] // 2:], torch.zeros_like(dense[..., grid[1] // 2:]))
    model.train()


def test_a_pooled_second_read_is_resized_onto_the_decoders_grid(model_with_read_and_batch) -> None:
    model, batch = model_with_read_and_batch
    add_dense_prompt(model, SQUASHING_VIEW)
    with torch.no_grad():
        model.seg_head.dense_prompt.zero_()  # the first read's map out of the way
    torch.manual_seed(2)
    add_embedding_read(model, grid=2)
    assert model.config.seg_head_read_grid == 2
    with torch.no_grad():
        model.seg_head.embedding_dense_prompt.fill_(1.0)
    model.eval()
    states, seg_image, features, embeddings = seg_inputs(model, batch)
    full = tuple(embeddings.embeddings.shape[-2:])
    side = model.mask_backbone.image_size
    tall = [(side, side // 2)] * len(batch.resized_sizes)
    with torch.no_grad():
        projection = model.project_seg_with_attention(states, seg_image, features, embeddings, tall)
        weights = projection.embedding_attention
        assert weights.shape == (states.shape[0], 4)
        assert torch.equal(weights[:, [1, 3]], torch.zeros(states.shape[0], 2))  # the right column: padding
        dense = model.dense_prompts(projection, seg_image, embeddings, tall)
        resized = F.interpolate((weights * 2).reshape(-1, 1, 2, 2), full, mode="bilinear", align_corners=False)
        resized[..., full[1] // 2:] = 0
        assert torch.allclose(dense[:, :1], resized, atol=1e-6)
    model.train()


def test_training_supervises_both_reads_each_on_its_own_grid(two_read_model) -> None:
    model, batch = two_read_model
    set_trainable(model, None)
    model.eval()
    plain, weighted = model(batch), model(batch, attention_weight=0.5)
    states, seg_image, features, embeddings = seg_inputs(model, batch)
    projection = model.project_seg_with_attention(states, seg_image, features, embeddings, batch.resized_sizes)
    token_cells = target_cell_shares(batch.masks, round(projection.attention.shape[-1] ** 0.5))
    side = round(projection.embedding_attention.shape[-1] ** 0.5)
    frames = sam_view_frames(model, batch)
    embedding_cells = target_cell_shares(batch.masks, side, frames)
    token_ce = -(token_cells * projection.attention.clamp(min=1e-12).log()).sum()
    embedding_ce = -(embedding_cells * projection.embedding_attention.clamp(min=1e-12).log()).sum()
    expected = (token_ce + embedding_ce) / plain.num_masks
    assert embedding_ce > 0 and token_ce > 0
    assert torch.allclose(weighted.loss, plain.loss + 0.5 * expected, atol=1e-5)
    model.train()
    model.zero_grad(set_to_none=True)
    model(batch, attention_weight=1.0).loss.backward()
    read = model.seg_head.embedding_attention
    for name in ("query", "key"):
        assert getattr(read, name).weight.grad.abs().sum() > 0, name
    assert read.value[-1].weight.grad.abs().sum() > 0
    assert model.seg_head.embedding_dense_prompt.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_a_saved_folder_keeps_the_second_read_and_the_pipeline_uses_it(tmp_path) -> None:
    from lisa.inference.pipeline import LisaPipeline

    folder, base = tiny_folder_with_image_read(tmp_path / "m")
    assert "seg_head_embedding_read" not in json.loads((folder / "lisa_config.json").read_text())
    add_dense_prompt(base, SQUASHING_VIEW)
    add_embedding_read(base, grid=2)
    base.save_pretrained(folder)
    saved = json.loads((folder / "lisa_config.json").read_text())
    assert saved["seg_head_embedding_read"] is True and saved["seg_head_read_grid"] == 2
    loaded = LisaModel.from_pretrained(folder)
    assert loaded.seg_head.embedding_attention is not None
    assert base.state_dict().keys() == loaded.state_dict().keys()
    for (name, a), (_, b) in zip(base.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    pipe = LisaPipeline.from_pretrained(folder, device="cpu", dtype="float32")
    image = (torch.rand(40, 50, 3) * 255).byte().numpy()
    silent = pipe(image, "the red circle", answers="[SEG].")
    with torch.no_grad():
        pipe.model.seg_head.embedding_dense_prompt.fill_(3.0)
    changed = pipe(image, "the red circle", answers="[SEG].")
    assert not torch.equal(torch.as_tensor(changed.scores), torch.as_tensor(silent.scores))


def test_a_training_config_adds_the_second_read(tmp_path) -> None:
    from lisa.train.config import config_from_dict
    from lisa.train.model_setup import prepare_model

    folder = tiny_folder_with_image_read(tmp_path / "m")[0]
    base = {"run_dir": str(tmp_path / "run"), "data": [{"type": "jsonl", "dir": "x"}], "lora": None}

    def prepared(path=folder, **model_keys):
        config = config_from_dict({**base, "model": {"base": str(path), **model_keys}})
        return prepare_model(config, path)[0]

    model = prepared(seg_head_dense_prompt=True, seg_head_embedding_read=True, seg_head_read_grid=2)
    assert (model.config.seg_head_embedding_read, model.config.seg_head_read_grid) == (True, 2)
    assert model.seg_head.embedding_attention is not None
    assert model.seg_head.embedding_attention.query.weight.requires_grad
    assert model.seg_head.embedding_dense_prompt.requires_grad
    with pytest.raises(LisaError, match="beside a dense prompt"):  # the base has no dense prompt
        prepared(seg_head_embedding_read=True)
    model.save_pretrained(tmp_path / "two")
    for name in ("tokenizer.json", "tokenizer_config.json", "preprocessor_config.json", "special_tokens_map.json"):
        if (folder / name).is_file():
            (tmp_path / "two" / name).write_bytes((folder / name).read_bytes())
    with pytest.raises(LisaError, match="cannot remove the base's trained second read"):
        prepared(tmp_path / "two", seg_head_embedding_read=False)
    assert prepared(tmp_path / "two").config.seg_head_embedding_read  # unset: kept


def test_the_seg_warmup_supervises_both_reads(two_read_model) -> None:
    from lisa.train.seg_warmup import target_boxes, warmup_forward

    model, batch = two_read_model
    model.eval()
    _, present = target_boxes(batch)
    plain = warmup_forward(model, batch, weight=1.0)
    weighted = warmup_forward(model, batch, weight=1.0, attention_weight=0.5)
    states, seg_image, features, embeddings = seg_inputs(model, batch)
    projection = model.project_seg_with_attention(states, seg_image, features, embeddings, batch.resized_sizes)
    frames = sam_view_frames(model, batch)
    token_cells = target_cell_shares(batch.masks, round(projection.attention.shape[-1] ** 0.5))
    embedding_cells = target_cell_shares(batch.masks, round(projection.embedding_attention.shape[-1] ** 0.5), frames)
    expected = (-(token_cells * projection.attention.clamp(min=1e-12).log()).sum()
                - (embedding_cells * projection.embedding_attention.clamp(min=1e-12).log()).sum()) / int(present.sum())
    assert torch.allclose(weighted.loss, plain.loss + 0.5 * expected, atol=1e-5)
    model.train()
