"""The seg head's read over the mask backbone's image embedding (``seg_head_read:
mask_embedding``): each [SEG] attends over its own image's SAM embedding cells, never over the
view's padding, is supervised with the target's share of those cells, and its map is the dense
prompt on the decoder's grid as it is."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from _training import SQUASHING_VIEW, sam_view_frames, seg_inputs, tiny_folder_with_image_read

from lisa.errors import LisaError
from lisa.model.lisa import LisaModel
from lisa.model.losses import target_cell_shares
from lisa.model.seg_head import ImageAttention, SegHead, SegProjection
from lisa.train.model_setup import add_dense_prompt, replace_image_read
from lisa.train.trainable import set_trainable

def test_padded_frames_lay_the_target_on_the_views_grid() -> None:
    mask = torch.zeros(1, 8, 16, dtype=torch.uint8)
    mask[0, :, :8] = 1  # the left half of a wide image
    # The whole image as the grid: the left column of cells, half each.
    assert torch.allclose(target_cell_shares([mask], 2), torch.tensor([[0.5, 0.0, 0.5, 0.0]]))
    # SAM's view of side 8: the image resized to 4x8 at the top, padding below. The left half is
    # all of the top-left cell.
    assert torch.allclose(target_cell_shares([mask], 2, [((4, 8), 8)]), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    # On a 4x4 grid: rows 0-1 (the image), columns 0-1.
    expected = torch.zeros(4, 4)
    expected[:2, :2] = 0.25
    assert torch.allclose(target_cell_shares([mask], 4, [((4, 8), 8)]), expected.flatten()[None])


def test_padding_cells_get_no_attention() -> None:
    torch.manual_seed(0)
    read = ImageAttention(4, 3, 2)
    valid = torch.tensor([[True, True, False, False], [True, True, True, True]])
    weights = read.weights(torch.randn(2, 4), torch.randn(2, 4, 3), valid)
    assert torch.equal(weights[0, 2:], torch.zeros(2)) and (weights[1] > 0).all()
    assert torch.allclose(weights.sum(-1), torch.ones(2))


def test_an_unknown_read_is_refused() -> None:
    with pytest.raises(LisaError, match="unknown seg_head_read 'pixels'"):
        SegHead(8, 4, image_attention=True, read="pixels")


def test_the_dense_prompt_is_the_map_on_the_grid_scaled_over_the_image() -> None:
    head = SegHead(4, 3, image_attention=True, dense_prompt=True, read="mask_embedding")
    with torch.no_grad():
        head.dense_prompt.copy_(torch.tensor([1.0, -2.0, 0.5]))
    valid = torch.tensor([[True, True, False, False]])  # a 2x2 grid, the image in the top row
    dense = head.dense_prompts_on_grid(torch.tensor([[0.5, 0.5, 0.0, 0.0]]), valid, (2, 2))
    assert torch.allclose(dense[0, 1], torch.tensor([[-2.0, -2.0], [0.0, 0.0]]))  # uniform over the image: 1


@pytest.fixture()
def embedding_read_model(model_with_read_and_batch):
    model, batch = model_with_read_and_batch
    add_dense_prompt(model, SQUASHING_VIEW)
    torch.manual_seed(2)
    replace_image_read(model, "mask_embedding")
    with torch.no_grad():
        model.seg_head.dense_prompt.fill_(1.0)
    return model, batch


def test_replacing_the_read_keeps_the_head_and_starts_silent(model_with_read_and_batch) -> None:
    model, batch = model_with_read_and_batch
    add_dense_prompt(model, SQUASHING_VIEW)
    kept = {name: p.detach().clone() for name, p in model.seg_head.named_parameters()
            if not name.startswith("image_attention.")}
    replace_image_read(model, "mask_embedding")
    assert model.config.seg_head_read == "mask_embedding" and model.seg_head.read == "mask_embedding"
    for name, p in model.seg_head.named_parameters():
        if name in kept:
            assert torch.equal(p, kept[name]), name
    model.eval()
    states, seg_image, features, embeddings = seg_inputs(model, batch)
    with torch.no_grad():
        prompts = model.project_seg(states, seg_image, features, embeddings, batch.resized_sizes)
        head = model.seg_head
        assert torch.allclose(prompts, head.fc2(head.act(head.fc1(head.normalised(states)))))
    with pytest.raises(ValueError, match="mask embedding"):
        model.project_seg(states, seg_image, features)
    model.train()


def test_each_state_reads_its_own_images_embedding_and_never_the_padding(embedding_read_model) -> None:
    model, batch = embedding_read_model
    model.eval()
    states, seg_image, features, embeddings = seg_inputs(model, batch)
    grid = tuple(embeddings.embeddings.shape[-2:])
    with torch.no_grad():
        attention = model.project_seg_with_attention(states, seg_image, features, embeddings,
                                                 batch.resized_sizes).attention
        assert attention.shape == (states.shape[0], grid[0] * grid[1])
        swapped_embeddings = type(embeddings)(embeddings.embeddings.flip(0))
        swapped = model.project_seg_with_attention(states, seg_image, features, swapped_embeddings,
                                               batch.resized_sizes).attention
        assert not torch.allclose(attention, swapped)
        # A tall image fills the left half of SAM's view: the right half gets no weight.
        side = model.mask_backbone.image_size
        tall = [(side, side // 2)] * len(batch.resized_sizes)
        attention = model.project_seg_with_attention(states, seg_image, features, embeddings, tall).attention
        on_grid = attention.reshape(-1, *grid)
        assert torch.equal(on_grid[:, :, grid[1] // 2:], torch.zeros_like(on_grid[:, :, grid[1] // 2:]))
        assert torch.allclose(attention.sum(-1), torch.ones(attention.shape[0]))
    model.train()


def test_training_supervises_the_read_with_the_views_cells(embedding_read_model) -> None:
    model, batch = embedding_read_model
    set_trainable(model, None)
    model.eval()
    plain, weighted = model(batch), model(batch, attention_weight=0.5)
    states, seg_image, features, embeddings = seg_inputs(model, batch)
    attention = model.project_seg_with_attention(states, seg_image, features, embeddings, batch.resized_sizes).attention
    frames = sam_view_frames(model, batch)
    cells = target_cell_shares(batch.masks, round(attention.shape[-1] ** 0.5), frames)
    expected = -(cells * attention.clamp(min=1e-12).log()).sum() / plain.num_masks
    assert torch.allclose(weighted.loss, plain.loss + 0.5 * expected, atol=1e-5)
    model.train()
    model.zero_grad(set_to_none=True)
    model(batch, attention_weight=1.0).loss.backward()
    read = model.seg_head.image_attention
    for name in ("query", "key"):
        assert getattr(read, name).weight.grad.abs().sum() > 0, name
    assert read.value[-1].weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)


def test_saved_folder_keeps_the_read_and_the_pipeline_uses_it(tmp_path) -> None:
    from lisa.inference.pipeline import LisaPipeline

    folder, base = tiny_folder_with_image_read(tmp_path / "m")
    assert "seg_head_read" not in json.loads((folder / "lisa_config.json").read_text())  # the default: omitted
    add_dense_prompt(base, SQUASHING_VIEW)
    replace_image_read(base, "mask_embedding")
    base.save_pretrained(folder)
    assert json.loads((folder / "lisa_config.json").read_text())["seg_head_read"] == "mask_embedding"
    loaded = LisaModel.from_pretrained(folder)
    assert loaded.seg_head.read == "mask_embedding"
    for (name, a), (_, b) in zip(base.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    pipe = LisaPipeline.from_pretrained(folder, device="cpu", dtype="float32")
    image = (torch.rand(40, 50, 3) * 255).byte().numpy()  # wide: SAM's view pads the bottom
    zero = pipe(image, "the red circle", answers="[SEG].")
    assert zero.masks.shape == (1, 40, 50)
    with torch.no_grad():
        pipe.model.seg_head.dense_prompt.fill_(3.0)
    changed = pipe(image, "the red circle", answers="[SEG].")
    assert not torch.equal(torch.as_tensor(changed.scores), torch.as_tensor(zero.scores))


def test_a_pooled_read_sees_coarser_cells_and_its_map_is_resized_onto_the_decoders_grid(
        model_with_read_and_batch) -> None:
    import torch.nn.functional as F

    model, batch = model_with_read_and_batch
    add_dense_prompt(model, SQUASHING_VIEW)
    torch.manual_seed(2)
    replace_image_read(model, "mask_embedding", grid=2)
    assert model.config.seg_head_read_grid == 2
    with torch.no_grad():
        model.seg_head.dense_prompt.fill_(1.0)
    model.eval()
    states, seg_image, features, embeddings = seg_inputs(model, batch)
    full = tuple(embeddings.embeddings.shape[-2:])
    side = model.mask_backbone.image_size
    tall = [(side, side // 2)] * len(batch.resized_sizes)  # the image fills the left half of the view
    with torch.no_grad():
        attention = model.project_seg_with_attention(states, seg_image, features, embeddings, tall).attention
        assert attention.shape == (states.shape[0], 4)  # 2x2 cells
        assert torch.equal(attention[:, [1, 3]], torch.zeros(states.shape[0], 2))  # the right column: padding
        # The read's tokens are the embedding averaged over each quarter.
        pooled = F.adaptive_avg_pool2d(embeddings.embeddings, 2)
        expected = model.seg_head.image_attention.weights(
            model.seg_head.normalised(states), pooled[seg_image].flatten(2).transpose(1, 2),
            torch.tensor([True, False, True, False]).expand(states.shape[0], 4))
        assert torch.allclose(attention, expected)
        dense = model.dense_prompts(SegProjection(states, attention), seg_image, embeddings, tall)
        maps = (attention * 2).reshape(-1, 1, 2, 2)  # uniform over the two image cells: 1
        resized = F.interpolate(maps, full, mode="bilinear", align_corners=False)
        resized[..., full[1] // 2:] = 0
        assert torch.allclose(dense[:, :1], resized, atol=1e-6)
    model.train()
    with pytest.raises(LisaError, match="does not divide"):
        model.config = replace(model.config, seg_head_read_grid=3)
        model.read_grid(full)
    model.config = replace(model.config, seg_head_read_grid=2)
    with pytest.raises(LisaError, match="does not apply"):
        replace_image_read(model, "image_tokens", grid=2)


def test_a_training_config_builds_the_read_it_names_with_its_grid(tmp_path) -> None:
    from _training import tiny_folder_with_image_read

    from lisa.train.config import config_from_dict
    from lisa.train.model_setup import prepare_model

    folder = tiny_folder_with_image_read(tmp_path / "m")[0]
    base = {"run_dir": str(tmp_path / "run"), "data": [{"type": "jsonl", "dir": "x"}], "lora": None}

    def prepared(**model_keys):
        config = config_from_dict({**base, "model": {"base": str(folder), **model_keys}})
        return prepare_model(config, folder)[0].config

    # A rebuilt head (another norm) and a switched read both carry the grid they are given.
    rebuilt = prepared(seg_head_norm="batch", seg_head_read="mask_embedding", seg_head_read_grid=2)
    assert (rebuilt.seg_head_norm, rebuilt.seg_head_read, rebuilt.seg_head_read_grid) == ("batch", "mask_embedding", 2)
    switched = prepared(seg_head_read="mask_embedding", seg_head_read_grid=2)
    assert (switched.seg_head_read, switched.seg_head_read_grid) == ("mask_embedding", 2)
    # A grid alone would change nothing: refused rather than ignored.
    with pytest.raises(LisaError, match="seg_head_read_grid needs model.seg_head_read"):
        prepared(seg_head_read_grid=2)
    with pytest.raises(LisaError, match="does not apply"):
        prepared(seg_head_norm="batch", seg_head_read="image_tokens", seg_head_read_grid=2)
