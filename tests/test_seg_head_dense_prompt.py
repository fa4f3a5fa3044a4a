"""The seg head's dense prompt (SegHead(dense_prompt=True)): its read's attention, laid onto the
part of the mask decoder's grid that the image fills, times a learned vector, added to SAM's
no-mask dense prompt."""

from __future__ import annotations

import json

import pytest
import torch
from _training import SQUASHING_VIEW, tiny_folder_with_image_read

from lisa.errors import LisaError
from lisa.model.lisa import LisaModel
from lisa.model.mask_backbones import mask_backbone
from lisa.model.seg_head import SegHead
from lisa.train.model_setup import add_dense_prompt
from lisa.train.trainable import set_trainable


def test_the_map_is_scaled_to_uniform_one_and_placed_on_the_images_region() -> None:
    head = SegHead(4, 3, image_attention=True, dense_prompt=True)
    with torch.no_grad():
        head.dense_prompt.copy_(torch.tensor([1.0, -2.0, 0.5]))
    attention = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])  # 2x2 tokens
    dense = head.dense_prompts(attention, [(4, 2), (2, 2)], (4, 4))
    assert dense.shape == (2, 3, 4, 4)
    # All weight on the top-left token, a tall image filling 4 rows and 2 columns: bilinear
    # (align_corners=False) doubles the rows 4, 0 -> 4, 3, 1, 0; the padding columns stay 0.
    expected = torch.zeros(4, 4)
    expected[:, 0] = torch.tensor([4.0, 3.0, 1.0, 0.0])
    assert torch.allclose(dense[0, 0], expected) and torch.allclose(dense[0, 1], -2 * expected)
    # Uniform attention is 1 on the image, 0 on the padding.
    uniform = torch.zeros(4, 4)
    uniform[:2, :2] = 1.0
    assert torch.allclose(dense[1, 2], 0.5 * uniform)


def test_image_region_follows_each_backbones_layout() -> None:
    from transformers import Sam2Model, SamModel

    from lisa.model.build import Sam2Size, SamSize, build_sam2_config, build_sam_config

    sam = mask_backbone(SamModel(build_sam_config(SamSize())))
    sam2 = mask_backbone(Sam2Model(build_sam2_config(Sam2Size())))
    half, wide = sam.image_size // 2, (sam.image_size * 25 // 64, sam.image_size)
    assert sam.image_region((sam.image_size, half), (32, 32)) == (32, 16)  # SAM pads bottom and right
    assert sam.image_region(wide, (32, 32)) == (13, 32)  # 12.5 rows: the partly filled row counts
    assert sam2.image_region(wide, (64, 64)) == (64, 64)  # SAM 2 stretches the image onto the square


def test_a_dense_prompt_needs_the_read() -> None:
    with pytest.raises(LisaError, match="image read"):
        SegHead(4, 3, dense_prompt=True)


def test_a_token_grid_that_is_not_square_is_refused() -> None:
    head = SegHead(4, 3, image_attention=True, dense_prompt=True)
    with pytest.raises(LisaError, match="square image-token grid, got 5 tokens"):
        head.dense_prompts(torch.full((1, 5), 0.2), [(4, 4)], (4, 4))


def test_the_training_forward_sends_the_reads_attention_to_the_decoder(model_with_read_and_batch) -> None:
    model, batch = model_with_read_and_batch
    model.eval()  # fixed batch-norm statistics: the same head in every call
    before = model(batch).loss.detach()
    add_dense_prompt(model, SQUASHING_VIEW)
    assert model.config.seg_head_dense_prompt
    set_trainable(model, None)
    assert torch.equal(model(batch).loss.detach(), before)  # a zero vector: the masks of the base
    with torch.no_grad():
        model.seg_head.dense_prompt.fill_(1.0)
        value_out = model.seg_head.image_attention.value[-1]
        value_out.weight.zero_()  # the read's sparse output no longer depends on where it looks
    model.zero_grad(set_to_none=True)
    out = model(batch)
    assert not torch.allclose(out.loss.detach(), before)
    out.loss.backward()
    # Where the read looks now reaches the loss only through the dense prompt.
    query = model.seg_head.image_attention.query.weight
    assert query.grad is not None and query.grad.abs().sum() > 0
    assert model.seg_head.dense_prompt.grad is not None and model.seg_head.dense_prompt.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    model.train()


def test_add_dense_prompt_refuses_a_cropping_view(model_with_read_and_batch) -> None:
    model, _ = model_with_read_and_batch
    cropping = type("CroppingView", (), {"size": {"shortest_edge": 224}, "do_center_crop": True})()
    with pytest.raises(LisaError, match="without cropping"):
        add_dense_prompt(model, cropping)


def test_saved_model_keeps_the_dense_prompt_and_the_pipeline_uses_it(tmp_path) -> None:
    from lisa.inference.pipeline import LisaPipeline
    from lisa.model.folder import load_preprocessing

    folder, base = tiny_folder_with_image_read(tmp_path / "m")
    image = (torch.rand(40, 50, 3) * 255).byte().numpy()
    plain = LisaPipeline.from_pretrained(folder, device="cpu", dtype="float32")(image, "the red circle", answers="[SEG].")

    _, processor = load_preprocessing(folder)
    add_dense_prompt(base, processor)
    base.save_pretrained(folder)
    assert json.loads((folder / "lisa_config.json").read_text())["seg_head_dense_prompt"] is True
    loaded = LisaModel.from_pretrained(folder)
    assert loaded.seg_head.dense_prompt is not None and not loaded.seg_head.dense_prompt.any()
    pipe = LisaPipeline.from_pretrained(folder, device="cpu", dtype="float32")
    zero = pipe(image, "the red circle", answers="[SEG].")
    assert torch.equal(torch.as_tensor(zero.masks), torch.as_tensor(plain.masks))  # zero vector: LISA's prompt
    with torch.no_grad():
        pipe.model.seg_head.dense_prompt.fill_(3.0)
    changed = pipe(image, "the red circle", answers="[SEG].")
    assert not torch.equal(torch.as_tensor(changed.scores), torch.as_tensor(zero.scores))

    # A folder whose VLM view crops cannot line its tokens up with the mask: refused on load.
    config_path = folder / "preprocessor_config.json"
    view = json.loads(config_path.read_text())
    view.update(do_center_crop=True, size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    config_path.write_text(json.dumps(view))
    with pytest.raises(LisaError, match="without cropping"):
        LisaPipeline.from_pretrained(folder, device="cpu", dtype="float32")
