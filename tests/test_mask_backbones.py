"""The mask-backbone seam with SAM 2 (transformers' Sam2Model) and SAM 3's tracker head
(Sam3TrackerModel: SAM 3's ViT + SAM 2's decoder), tiny random configs built here: teacher-forced
forward and loss, training steps, generation with a forced [SEG], masks at the original size,
save -> load bit for bit, batched = single, `lisa init` / `lisa segment`, and (SAM 2) `lisa train`
with resume, export and `lisa eval`."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lisa.data.collate import Collator
from lisa.data.jsonl import JsonlTrain
from lisa.inference.pipeline import LisaPipeline
from lisa.model.build import ModelSize, Sam2Size, build_model, build_sam2_config, save_bundle
from lisa.model.lisa import LisaModel
from lisa.model.mask_backbones import ImageEmbedding, backbone_class, mask_backbone
from lisa.model.mask_backbones.sam2 import Sam2Backbone
from lisa.model.prompting import PromptBuilder
from lisa.train.synthetic import write_synthetic
from lisa.train.trainable import set_trainable


def tiny_sam3_tracker():
    """A 56 px Sam3TrackerModel (patch 14: a 4x4 embedding, 16x16 masks), random weights."""
    from transformers import Sam3TrackerConfig, Sam3TrackerModel
    from transformers.models.sam3.configuration_sam3 import Sam3ViTConfig, Sam3VisionConfig
    from transformers.models.sam3_tracker.configuration_sam3_tracker import (
        Sam3TrackerMaskDecoderConfig,
        Sam3TrackerPromptEncoderConfig,
    )

    vit = Sam3ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=56,
                        patch_size=14, window_size=2, global_attn_indexes=[1], pretrain_image_size=56)
    config = Sam3TrackerConfig(
        vision_config=Sam3VisionConfig(backbone_config=vit, fpn_hidden_size=32, backbone_feature_sizes=[[16, 16], [8, 8], [4, 4]]),
        prompt_encoder_config=Sam3TrackerPromptEncoderConfig(hidden_size=32, image_size=56, patch_size=14),
        mask_decoder_config=Sam3TrackerMaskDecoderConfig(hidden_size=32, mlp_dim=64, num_attention_heads=2, iou_head_hidden_dim=32),
    )
    model = Sam3TrackerModel(config)
    mask_backbone(model).init_from_scratch()
    return model


def tiny_mask_model(kind: str):
    torch.manual_seed(0)
    if kind == "sam2":
        from transformers import Sam2Model

        model = Sam2Model(build_sam2_config(Sam2Size()))
        mask_backbone(model).init_from_scratch()
        return model
    return tiny_sam3_tracker()


@pytest.fixture(scope="module", params=["sam2", "sam3_tracker"])
def sam2_model_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    if request.param == "sam2":
        model, tokenizer, processor = build_model(ModelSize(sam2=Sam2Size()))
    else:
        model, tokenizer, processor = build_model(ModelSize(), sam=tiny_sam3_tracker())
    directory = tmp_path_factory.mktemp(f"lisa-{request.param}")
    save_bundle(directory, model, tokenizer, processor)
    return directory


@pytest.fixture(scope="module")
def pipe(sam2_model_dir: Path) -> LisaPipeline:
    return LisaPipeline.from_pretrained(sam2_model_dir, device="cpu", dtype="float32", threads=None)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("shapes"), images=4, size=48, val_images=0)


def _batch(pipe: LisaPipeline, model: LisaModel, shapes: Path):
    loader = JsonlTrain(shapes, "train", max_queries=2)
    samples = [loader.sample(i, random.Random(i)) for i in range(2)]
    return Collator(PromptBuilder(pipe.tokenizer, model.config), pipe.image_processor, model.mask_backbone.view)(samples)


def _fresh(sam2_model_dir: Path) -> LisaModel:
    return LisaModel.from_pretrained(sam2_model_dir)


class _SegBias:
    """lm_head biased towards [SEG]: the random model then generates [SEG] at every step."""

    def __init__(self, model: LisaModel, value: float = 1e4) -> None:
        self.lm_head, self.seg, self.value = model.vlm.lm_head, model.config.seg_token_id, value

    def __enter__(self) -> None:
        bias = torch.zeros(self.lm_head.out_features)
        bias[self.seg] = self.value
        self.lm_head.bias = torch.nn.Parameter(bias, requires_grad=False)

    def __exit__(self, *exc) -> None:
        self.lm_head.bias = None


def test_registry_picks_the_adapter_by_model_type(pipe: LisaPipeline) -> None:
    kind = pipe.model.config.sam["model_type"]
    assert type(pipe.model.mask_backbone) is backbone_class(kind) and type(pipe.model.sam) is backbone_class(kind).model_class
    assert isinstance(pipe.model.mask_backbone, Sam2Backbone)  # SAM 3's tracker head is SAM 2's interface
    assert pipe.model.config.out_dim == 32 and pipe.model.config.sam_image_size == {"sam2": 64, "sam3_tracker": 56}[kind]


def test_embedding_is_transformers_own(pipe: LisaPipeline) -> None:
    """``embed`` = the model's ``get_image_embeddings``: the stride-16 map with the no-memory
    embedding, and the two finer FPN levels through the decoder's conv_s0 / conv_s1."""
    sam = pipe.model.sam
    side = pipe.model.config.sam_image_size
    pixels = torch.randn(2, 3, side, side)
    original = sam.no_memory_embedding.detach().clone()
    with torch.no_grad():
        sam.no_memory_embedding.normal_()  # HF initialises it to zeros: make its place visible
    try:
        ours = pipe.model.mask_backbone.embed(pixels)
        theirs = sam.get_image_embeddings(pixels)
        no_memory = sam.no_memory_embedding.detach().clone().reshape(1, -1, 1, 1)
    finally:
        with torch.no_grad():
            sam.no_memory_embedding.copy_(original)
    assert [tuple(t.shape) for t in (*ours.high_res, ours.embeddings)] == [(2, 4, 16, 16), (2, 8, 8, 8), (2, 32, 4, 4)]
    expected = theirs[2]
    if pipe.model.config.sam["model_type"] == "sam3_tracker":
        # transformers' image-mode SAM 3 tracker puts no_memory_embedding on the stride-32 level it
        # then drops; SAM 3 (and transformers' video tracker) on the stride-16 map, as the adapter.
        expected = theirs[2] + no_memory
    torch.testing.assert_close(ours.embeddings, expected, rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.high_res[0], theirs[0], rtol=0, atol=1e-6)
    torch.testing.assert_close(ours.high_res[1], theirs[1], rtol=0, atol=1e-6)
    assert ours.embeddings.abs().mean() > 1e-3  # not the all-zero output of a degenerate init


def test_decoder_keeps_mask_token_zero(pipe: LisaPipeline) -> None:
    """SAM 2's stability fallback (pick a multimask token when token 0 is unstable) is off, in
    eval mode too: LISA trains and reads token 0 only."""
    backbone = pipe.model.mask_backbone
    side = pipe.model.config.sam_image_size
    embedding = backbone.embed(torch.randn(1, 3, side, side))
    prompts = torch.randn(3, 32)
    low_res, iou = backbone.decode(embedding, prompts, torch.zeros(3, dtype=torch.long))
    assert low_res.shape == (3, 16, 16) and iou.shape == (3,)
    assert pipe.model.sam.mask_decoder.dynamic_multimask_via_stability is False


def test_decode_is_the_decoders_mask_token_zero(pipe: LisaPipeline) -> None:
    """``decode`` equals the HF mask decoder's own token-0 mask for LISA's inputs (the [SEG]
    prompt as the one sparse token, ``no_mask_embed`` dense, each prompt's image and its
    high-resolution features). The reference runs the decoder in train mode, where
    ``multimask_output=False`` always returns token 0, so it does not depend on the adapter's
    switches: a multimask token, the stability fallback or dropped / other images' high-res
    features all change the output."""
    backbone, sam = pipe.model.mask_backbone, pipe.model.sam
    side = pipe.model.config.sam_image_size
    torch.manual_seed(0)
    embedding = backbone.embed(torch.randn(2, 3, side, side))
    prompts = torch.randn(3, 32)
    index = torch.tensor([1, 0, 1])
    with torch.no_grad():
        low_res, iou = backbone.decode(embedding, prompts, index)
        was_training = sam.mask_decoder.training
        sam.mask_decoder.train()  # no dropout in the decoder: train mode only skips the fallback
        try:
            expected, expected_iou, _, _ = sam.mask_decoder(
                image_embeddings=embedding.embeddings[index],
                image_positional_embeddings=sam.get_image_wide_positional_embeddings().expand(3, -1, -1, -1),
                sparse_prompt_embeddings=prompts[:, None, None, :],
                dense_prompt_embeddings=sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1),
                multimask_output=False,
                high_resolution_features=[level[index] for level in embedding.high_res],
            )
        finally:
            sam.mask_decoder.train(was_training)
    torch.testing.assert_close(low_res, expected[:, 0, 0], rtol=0, atol=1e-6)
    torch.testing.assert_close(iou, expected_iou[:, 0, 0], rtol=0, atol=1e-6)


def test_parts_for_training_recipes() -> None:
    part = Sam2Backbone.part
    assert part("vision_encoder.backbone.blocks.0.attn.qkv.weight") == "image_encoder"
    assert part("mask_decoder.conv_s0.weight") == part("mask_decoder.conv_s1.bias") == "image_encoder"
    assert part("no_memory_embedding") == "image_encoder"
    assert part("mask_decoder.transformer.layers.0.mlp.proj_in.weight") == "mask_decoder"
    assert part("prompt_encoder.no_mask_embed.weight") is None


def test_teacher_forced_forward_loss_and_gradients(sam2_model_dir: Path, pipe: LisaPipeline, shapes: Path) -> None:
    model = _fresh(sam2_model_dir).train()
    set_trainable(model, [model.config.seg_token_id])
    batch = _batch(pipe, model, shapes)
    out = model(batch)
    assert out.num_masks > 0 and torch.isfinite(out.loss)
    assert out.bce_loss > 0 and out.dice_loss > 0
    for logits, size in zip(out.mask_logits, batch.original_sizes):
        assert logits.shape[1:] == size
    out.loss.backward()
    grads = {n for n, p in model.named_parameters() if p.grad is not None}
    assert "seg_head.fc1.weight" in grads
    assert "sam.mask_decoder.transformer.layers.0.mlp.proj_in.weight" in grads
    assert not any(n.startswith(("sam.vision_encoder.", "sam.mask_decoder.conv_s0.")) for n in grads)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "sam.mask_decoder.conv_s1.weight" not in trainable and "sam.mask_decoder.iou_token.weight" in trainable


def test_training_steps_lower_the_loss(sam2_model_dir: Path, pipe: LisaPipeline, shapes: Path) -> None:
    torch.manual_seed(0)
    model = _fresh(sam2_model_dir).train()
    set_trainable(model, [model.config.seg_token_id])
    batch = _batch(pipe, model, shapes)
    batch.sam_embeddings = model.mask_backbone.embed(batch.sam_pixels)  # frozen encoder: precomputed
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    losses, mask_losses = [], []
    for _ in range(8):
        optimizer.zero_grad()
        out = model(batch)
        out.loss.backward()
        optimizer.step()
        losses.append(float(out.loss.detach()))
        mask_losses.append(float(out.bce_loss + out.dice_loss))
    assert losses[-1] < 0.9 * losses[0], losses
    assert mask_losses[-1] < mask_losses[0], mask_losses


def test_generation_with_forced_seg_gives_masks_at_the_original_size(pipe: LisaPipeline) -> None:
    images = [np.full((40, 64, 3), 90, np.uint8), np.full((70, 24, 3), 200, np.uint8)]
    with _SegBias(pipe.model):
        results = pipe(images, ["the box", "the ball"], max_new_tokens=2)
    for result, image in zip(results, images):
        assert result.text.count("[SEG]") == 2
        assert result.masks.shape == (2, *image.shape[:2]) and result.masks.dtype == bool
        assert result.scores.shape == (2,)


def test_upscale_maps_low_res_to_any_aspect_ratio(pipe: LisaPipeline) -> None:
    """SAM 2 resizes the whole image to a square: a left-half mask stays the left half."""
    backbone = pipe.model.mask_backbone
    low = torch.full((1, 16, 16), -10.0)
    low[:, :, :8] = 10.0
    for size in [(30, 100), (100, 30), (16, 16)]:
        out = backbone.upscale(low, (64, 64), size)
        assert out.shape == (1, *size) and out.dtype == torch.float32
        half = size[1] // 2
        assert (out[0, :, : half - 1] > 0).all() and (out[0, :, half + 1:] < 0).all()


def _bilinear_weights(n_in: int, n_out: int) -> np.ndarray:
    """[n_out, n_in]: 1-D bilinear resampling by its definition with align_corners=False (sample
    point (d + 0.5) * n_in / n_out - 0.5, clamped to the edge pixels)."""
    source = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, n_in - 1)
    weights = np.zeros((n_out, n_in))
    np.add.at(weights, (np.arange(n_out), low), 1 - (source - low))
    np.add.at(weights, (np.arange(n_out), high), source - low)
    return weights


def test_upscale_is_one_bilinear_step_without_corner_alignment(pipe: LisaPipeline) -> None:
    """SAM 2 post-processes with one bilinear resize (align_corners=False) from the
    low-resolution logits straight to the original size. Checked against that resize computed
    from its definition (separable weights, numpy): align_corners=True or a detour through the
    S x S input (SAM's way) gives other values. Plus hand-computed values: a 2-wide ramp [0, 4]
    to 4 wide is [0, 1, 3, 4]."""
    side = pipe.model.config.sam_image_size
    backbone = pipe.model.mask_backbone
    low = torch.tensor([[[0.0, 4.0], [0.0, 4.0]]])
    torch.testing.assert_close(backbone.upscale(low, (side, side), (2, 4)), torch.tensor([[[0.0, 1.0, 3.0, 4.0]] * 2]))
    low = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 16, 16)).astype(np.float32))
    for size in [(30, 100), (37, 23)]:
        expected = _bilinear_weights(16, size[0]) @ low.double().numpy() @ _bilinear_weights(16, size[1]).T
        np.testing.assert_allclose(backbone.upscale(low, (side, side), size).numpy(), expected, rtol=0, atol=1e-5)


def test_view_is_a_normalised_square(pipe: LisaPipeline) -> None:
    backbone = pipe.model.mask_backbone
    side = pipe.model.config.sam_image_size
    view = backbone.view(np.full((10, 30, 3), 255, np.uint8))
    assert view.pixels.shape == (3, side, side) and view.resized_size == (side, side) and view.original_size == (10, 30)
    expected = (1 - torch.tensor(backbone.pixel_mean)) / torch.tensor(backbone.pixel_std)
    torch.testing.assert_close(view.pixels[:, 5, 5], expected)


def test_save_load_round_trip_is_bit_exact(sam2_model_dir: Path, pipe: LisaPipeline, tmp_path: Path) -> None:
    pipe.model.save_pretrained(tmp_path)
    again = LisaModel.from_pretrained(tmp_path)
    ours, theirs = pipe.model.state_dict(), again.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    image = np.random.default_rng(0).integers(0, 255, (33, 50, 3), dtype=np.uint8)
    second = LisaPipeline(again, pipe.tokenizer, pipe.image_processor)
    a = pipe(image, "the thing", answers="Sure, [SEG].")
    b = second(image, "the thing", answers="Sure, [SEG].")
    assert np.array_equal(a.masks, b.masks) and np.array_equal(a.scores, b.scores)


def test_batched_equals_single(pipe: LisaPipeline) -> None:
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 255, (48, 40, 3), dtype=np.uint8), rng.integers(0, 255, (30, 64, 3), dtype=np.uint8)]
    queries, answers = ["first", "second"], ["[SEG].", "[SEG] and [SEG]."]
    pipe.clear_cache()
    batched = pipe(images, queries, answers=answers)
    for index in range(2):
        pipe.clear_cache()
        single = pipe(images[index], queries[index], answers=answers[index])
        assert np.array_equal(single.masks, batched[index].masks)
        np.testing.assert_allclose(single.scores, batched[index].scores, atol=1e-5)


def test_image_embedding_indexes_and_stacks_every_tensor() -> None:
    embedding = ImageEmbedding(torch.randn(3, 8, 2, 2), (torch.randn(3, 1, 8, 8), torch.randn(3, 2, 4, 4)))
    one = embedding[1]
    assert one.embeddings.shape == (8, 2, 2) and one.high_res[1].shape == (2, 4, 4)
    again = ImageEmbedding.stack([embedding[2], embedding[0]])
    assert torch.equal(again.high_res[0], embedding.high_res[0][[2, 0]])
    assert ImageEmbedding.of(embedding.embeddings).high_res == ()


@pytest.mark.parametrize("kind", ["sam2", "sam3_tracker"])
def test_lisa_init_and_segment_with_a_sam2_folder(kind: str, tmp_path: Path) -> None:
    """`lisa init --vlm LLAVA --sam SAM2_FOLDER --out DIR` (a folder written by save_pretrained),
    then `lisa segment` on the result."""
    from lisa.cli import main
    from lisa.interop.fixtures import write_llava_hf_folder, write_tiny_official

    sam = tiny_mask_model(kind)
    sam.save_pretrained(tmp_path / "sam2")
    tiny = write_tiny_official(tmp_path / "official")
    write_llava_hf_folder(tmp_path / "llava-hf", tiny)
    out = tmp_path / "out"
    assert main(["init", "--vlm", str(tmp_path / "llava-hf"), "--sam", str(tmp_path / "sam2"), "--out", str(out)]) == 0
    model = LisaModel.from_pretrained(out)
    assert type(model.sam) is type(sam) and model.config.out_dim == 32
    for name, tensor in sam.state_dict().items():
        assert torch.equal(model.sam.state_dict()[name], tensor), name
    Image.fromarray(np.full((30, 44, 3), 120, np.uint8)).save(tmp_path / "in.png")
    code = main(["segment", str(tmp_path / "in.png"), "the thing", "--model", str(out), "--out", str(tmp_path / "seg"),
                 "--device", "cpu", "--max-new-tokens", "4"])
    assert code == 0 and (tmp_path / "seg" / "result.json").is_file()


def _train_config(run_dir: Path, recipe: str = "lisa", sam_folder: Path | None = None) -> dict:
    """configs/smoke.yaml, 4 steps, with a fresh tiny SAM 2 (``model.build.sam2``) or the mask
    model saved in ``sam_folder`` (``model.sam``)."""
    import yaml

    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml").read_text())
    data.update(run_dir=str(run_dir), save_every=2, val_every=4, recipe=recipe,
                precompute_sam_embeddings=recipe == "lisa")
    if sam_folder is None:
        data["model"]["build"] = {"sam2": {}}  # lisa.model.build.Sam2Size
    else:
        data["model"]["sam"] = str(sam_folder)
    data["data"][0]["images"] = 4
    data["optim"].update(max_steps=4, warmup_steps=1, lr=1e-2)
    data["val"]["limit"] = 3
    return data


@pytest.mark.parametrize("kind", ["sam2", "sam3_tracker"])
def test_train_resume_export_and_eval_with_sam2(kind: str, tmp_path: Path) -> None:
    """`lisa train` on a Llava + SAM 2 (a fresh one from model.build) or SAM 3 tracker (a folder
    in model.sam) model: a run stopped after its step-2 checkpoint and resumed ends bit for bit
    where an uninterrupted run does; export, then `lisa eval`."""
    from safetensors.torch import load_file

    from lisa.cli import main
    from lisa.train.checkpoint import WEIGHTS_NAME, latest_checkpoint
    from lisa.train.config import config_from_dict
    from lisa.train.export import export
    from lisa.train.trainer import Trainer

    folder = None
    if kind != "sam2":
        folder = tmp_path / kind
        tiny_mask_model(kind).save_pretrained(folder)
    straight = Trainer(config_from_dict(_train_config(tmp_path / "straight", sam_folder=folder)), progress=False)
    straight.fit()
    stopped = Trainer(config_from_dict(_train_config(tmp_path / "stopped", sam_folder=folder)), progress=False)
    while stopped.state.step < 2:
        stopped.optimizer_step()
        stopped.maybe_save()
    stopped.logger.close()
    Trainer(config_from_dict(_train_config(tmp_path / "stopped", sam_folder=folder)), resume=True, progress=False).fit()
    final_a = latest_checkpoint(tmp_path / "straight" / "checkpoints")
    final_b = latest_checkpoint(tmp_path / "stopped" / "checkpoints")
    assert final_a.name == final_b.name == "step-00000004"
    a, b = load_file(str(final_a / WEIGHTS_NAME)), load_file(str(final_b / WEIGHTS_NAME))
    assert a.keys() == b.keys() and any(k.startswith("sam.mask_decoder.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)

    out = export(tmp_path / "straight", tmp_path / "exported")
    assert LisaModel.from_pretrained(out).config.sam["model_type"] == kind
    report = tmp_path / "report.json"
    code = main(["eval", "--model", str(out), "--dataset", "jsonl", "--data-dir", str(tmp_path / "straight" / "data"),
                 "--limit", "2", "--device", "cpu", "--max-new-tokens", "4", "--no-progress", "--out", str(report)])
    assert code == 0 and report.is_file()


def test_recipe_with_the_image_encoder_trains_sam2s_encoder(tmp_path: Path) -> None:
    from lisa.train.config import config_from_dict
    from lisa.train.trainer import Trainer

    trainer = Trainer(config_from_dict(_train_config(tmp_path / "run", recipe="lisa_sam_encoder")), progress=False)
    model = trainer.unwrapped
    encoder = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("sam.vision_encoder.")}
    assert model.sam.mask_decoder.conv_s0.weight.requires_grad and model.sam.vision_encoder.neck.convs[1].weight.requires_grad
    for _ in range(2):  # the first step's learning rate is 0 (warm-up)
        trainer.optimizer_step()
    changed = [n for n, p in model.named_parameters() if n in encoder and not torch.equal(encoder[n], p)]
    assert "sam.vision_encoder.backbone.patch_embed.projection.weight" in changed


def test_unknown_mask_backbone_is_one_error(sam2_model_dir: Path, tmp_path: Path) -> None:
    import json
    import shutil

    from lisa.errors import LisaError

    folder = tmp_path / "model"
    shutil.copytree(sam2_model_dir, folder)
    config = json.loads((folder / "lisa_config.json").read_text())
    config["sam"]["model_type"] = "sam_hq"
    (folder / "lisa_config.json").write_text(json.dumps(config))
    with pytest.raises(LisaError, match=r"mask backbone model_type 'sam_hq' is not supported \(supported: sam, sam2, sam3_tracker\)"):
        LisaModel.from_pretrained(folder)


def test_a_sam2_folder_given_as_a_model_is_named(tmp_path: Path) -> None:
    from lisa.errors import LisaError

    tiny_mask_model("sam2").save_pretrained(tmp_path / "sam2")
    with pytest.raises(LisaError, match="is a SAM model folder \\(config.json says model_type 'sam2'\\)"):
        LisaModel.from_pretrained(tmp_path / "sam2")


def test_no_mask_backbone_internals_outside_the_adapters() -> None:
    """Code outside lisa.model.mask_backbones names no mask-model class, config or internal
    (encoder, prompt encoder, decoder, positional embeddings): it goes through the adapter.
    Allowed: SAM's own numerics (model/sam.py, used by the SAM adapter), the builders, the
    released-checkpoint converters and the SAM-only tools (stage-1 SAM training, the baseline)."""
    import re

    from _code_scan import names_outside

    allowed = ("model/mask_backbones/", "model/sam.py", "model/build", "interop/", "baselines/",  # build*.py: builders
               "train/sam_pretrain.py", "train/sam_regrid.py")
    forbidden = re.compile(r"\bSam\w*Model\b|\bSam\w*Config\b|mask_decoder\.|prompt_encoder\.|vision_encoder\.|"
                           r"get_image_embeddings|get_image_wide_positional_embeddings|no_mask_embed|"
                           r"shared_image_embedding|sam_ops\.(?!mask_scores)")
    offenders = names_outside(allowed, forbidden)
    assert not offenders, offenders


@pytest.mark.parametrize("family,kind", [("qwen2_5_vl", "sam2"), ("qwen3_vl", "sam3_tracker")])
def test_qwen_vl_with_a_new_mask_backbone(family: str, kind: str, shapes: Path, tmp_path: Path) -> None:
    """The two seams together: a tiny Qwen-VL (the VLM seam's builder; skipped where it is not
    merged yet) with SAM 2 / SAM 3's tracker swapped in. Forward + loss and training steps,
    forced-[SEG] generation at the original size, batched = single, save -> load bit for bit."""
    build_qwen = pytest.importorskip("lisa.model.build_qwen")
    from lisa.train.model_setup import swap_sam

    folder = build_qwen.write_tiny_qwen_model(tmp_path / "model", seed=0, family=family)
    model = LisaModel.from_pretrained(folder)
    swap_sam(model, tiny_mask_model(kind))
    model.save_pretrained(folder)
    pipe = LisaPipeline.from_pretrained(folder, device="cpu", dtype="float32", threads=None)
    assert type(pipe.model.mask_backbone) is backbone_class(kind)

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (40, 60, 3), dtype=np.uint8), rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)]
    with _SegBias(pipe.model):
        generated = pipe(images, ["the cat", "the dog"], max_new_tokens=2)
    assert [r.masks.shape for r in generated] == [(2, 40, 60), (2, 64, 48)]
    answers = ["Sure, [SEG].", "[SEG] and [SEG]."]
    pipe.clear_cache()
    batched = pipe(images, ["the cat", "the dog"], answers=answers)
    for index in range(2):
        pipe.clear_cache()
        single = pipe(images[index], ["the cat", "the dog"][index], answers=answers[index])
        assert np.array_equal(single.masks, batched[index].masks)
        np.testing.assert_allclose(single.scores, batched[index].scores, atol=1e-5)

    again = LisaModel.from_pretrained(folder)
    assert all(torch.equal(a, b) for a, b in zip(pipe.model.state_dict().values(), again.state_dict().values()))

    model = again.train()
    set_trainable(model, [model.config.seg_token_id])
    batch = _batch(pipe, model, shapes)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2, weight_decay=0.0)
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        out = model(batch)
        assert out.num_masks > 0
        out.loss.backward()
        optimizer.step()
        losses.append(float(out.loss.detach()))
    assert losses[-1] < losses[0], losses
