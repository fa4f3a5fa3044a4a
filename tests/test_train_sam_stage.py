"""Stage 1 (SAM as a promptable segmenter): learns, and resumes exactly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from safetensors.torch import load_file

from lisa.errors import LisaError
from lisa.model.build import SamSize
from lisa.train.checkpoint import WEIGHTS_NAME
from lisa.train.sam_pretrain import SamStageConfig, collect_instances, train_sam

SMALL = SamSize(hidden=32, layers=2, heads=2, image_size=64, patch=16, window=2, prompt_dim=32, decoder_mlp=64, decoder_heads=2)


@pytest.fixture()
def square_world(tmp_path):
    """Three images, each a bright square on a dark background, as a JSONL folder with RLE targets."""
    rng = np.random.default_rng(0)
    lines = []
    for index in range(3):
        image = np.full((48, 48, 3), 30, np.uint8)
        y, x = rng.integers(4, 24, 2)
        image[y:y + 20, x:x + 20] = 220
        Image.fromarray(image).save(tmp_path / f"{index}.png")
        mask = np.zeros((48, 48), np.uint8)
        mask[y:y + 20, x:x + 20] = 1
        rle = mask_utils.encode(np.asfortranarray(mask))
        target = {"rle": {"size": [48, 48], "counts": rle["counts"].decode()}}
        lines.append(json.dumps({"image": f"{index}.png", "query": "the square", "targets": [target]}))
    (tmp_path / "referring.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def _config(run_dir, data_dir, steps: int) -> SamStageConfig:
    return SamStageConfig(stage="sam", run_dir=str(run_dir), data_dir=str(data_dir), size=SMALL, lr=3e-3, warmup_steps=2,
                          max_steps=steps, batch_size=3, save_every=2, keep_last=2, log_every=1, threads=1)


def test_collects_every_distinct_target(square_world) -> None:
    assert len(collect_instances(square_world)) == 3


@pytest.mark.parametrize("config", ["1-sam.yaml", "1-sam-v2.yaml", "1-sam-phrase.yaml", "1b-sam-dense.yaml",
                                    "1b-sam-dense-v2.yaml", "1c-sam-fine-v2.yaml"])
def test_sam_stage_instances_ignore_families_added_later(tmp_path, config: str) -> None:
    """The shipped SAM stages were trained before present.jsonl existed, which holds targets of
    its own: the recipe's configs must collect exactly the instances of the folder without it,
    in the same order, or a fresh run of the recipe trains another SAM."""
    import shutil
    from pathlib import Path

    from lisa.data.shapes.generate import generate_split
    from lisa.train.sam_pretrain import load_stage_config

    generate_split(tmp_path / "now", "val", n=6, seed=0, size=128)
    earlier = tmp_path / "earlier"
    shutil.copytree(tmp_path / "now" / "val", earlier)
    (earlier / "present.jsonl").unlink()
    names = load_stage_config(Path(__file__).parents[1] / "configs" / "tiny-shapes" / config).names

    def instances(folder: Path, names: list[str] | None) -> list[tuple[str, str]]:
        return [(Path(i.record.image).name, json.dumps(i.record.targets[i.target], sort_keys=True, default=str))
                for i in collect_instances(folder, names)]

    assert instances(tmp_path / "now" / "val", names) == instances(earlier, None)
    assert instances(tmp_path / "now" / "val", None) != instances(earlier, None)  # all files: other order


def test_loss_falls(square_world, tmp_path) -> None:
    train_sam(_config(tmp_path / "run", square_world, 12))
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    assert (tmp_path / "run" / "sam" / "config.json").is_file()


def test_resume_reaches_the_same_weights(square_world, tmp_path) -> None:
    straight = train_sam(_config(tmp_path / "a", square_world, 4))
    train_sam(_config(tmp_path / "b", square_world, 2))
    with pytest.raises(LisaError, match="--resume"):
        train_sam(_config(tmp_path / "b", square_world, 4))
    resumed = train_sam(_config(tmp_path / "b", square_world, 4), resume=True)
    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_lisa_train_runs_a_sam_stage_config(square_world, tmp_path) -> None:
    from lisa.cli import main

    config = tmp_path / "sam.yaml"
    config.write_text(
        f"stage: sam\nrun_dir: {tmp_path / 'cli'}\ndata_dir: {square_world}\nmax_steps: 2\nbatch_size: 2\n"
        "size: {hidden: 32, layers: 2, heads: 2, image_size: 64, patch: 16, window: 2, prompt_dim: 32, decoder_mlp: 64, decoder_heads: 2}\n"
    )
    assert main(["train", "--config", str(config)]) == 0
    assert (tmp_path / "cli" / "sam" / "model.safetensors").is_file()
    bad = tmp_path / "bad.yaml"
    bad.write_text("stage: sam\nrun_dir: x\ndata_dir: y\nsize: {hiden: 3}\n")
    assert main(["train", "--config", str(bad)]) == 2  # unknown key size.hiden, one-line error


def test_threads_option_overrides_the_configs_threads(square_world, tmp_path) -> None:
    """`lisa train --threads 1` on a config that says `threads: 2` trains with 1 (it once printed 1
    and trained with the config's 2), and the run's config.json records the count used."""
    from lisa.cli import main

    config = tmp_path / "sam.yaml"
    config.write_text(
        f"stage: sam\nrun_dir: {tmp_path / 'run'}\ndata_dir: {square_world}\nmax_steps: 1\nbatch_size: 2\nthreads: 2\n"
        "size: {hidden: 32, layers: 2, heads: 2, image_size: 64, patch: 16, window: 2, prompt_dim: 32, decoder_mlp: 64, decoder_heads: 2}\n"
    )
    before = torch.get_num_threads()
    try:
        assert main(["train", "--config", str(config), "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
        assert json.loads((tmp_path / "run" / "config.json").read_text())["threads"] == 1
    finally:
        torch.set_num_threads(before)


def test_prompted_evaluation_scores_in_unit_range(square_world, tmp_path) -> None:
    from transformers import SamModel

    from lisa.train.sam_pretrain import evaluate_prompted

    sam = SamModel.from_pretrained(train_sam(_config(tmp_path / "e", square_world, 2)))
    scores = evaluate_prompted(sam, square_world, count=8)
    assert set(scores) == {"box_miou", "point_miou"} and all(0.0 <= v <= 1.0 for v in scores.values())


def test_phrase_prompts_train_and_resume_exactly(square_world, tmp_path) -> None:
    def config(run_dir, steps):
        c = _config(run_dir, square_world, steps)
        c.phrase_every = 2
        return c

    straight = train_sam(config(tmp_path / "a", 4))
    train_sam(config(tmp_path / "b", 2))
    resumed = train_sam(config(tmp_path / "b", 4), resume=True)
    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(resumed / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    saved = load_file(str(next((tmp_path / "a" / "checkpoints").glob("step-*")) / WEIGHTS_NAME))
    assert any(k.startswith("prompter.") for k in saved)  # the phrase prompter trains (and is checkpointed)


def test_phrase_prompter_embeds_bags_of_words() -> None:
    from lisa.train.sam_pretrain import PhrasePrompter

    prompter = PhrasePrompter(["blue", "red", "square"], prompt_dim=8)
    out = prompter(["the red square", "Blue, square", "unknown words only"])
    assert out.shape == (3, 8)
    assert not torch.allclose(out[0], out[1])


def _with_semantic(world):
    """The square world plus a semantic record per image ("square" -> its mask)."""
    lines = [json.loads(line) for line in (world / "referring.jsonl").read_text().splitlines()]
    (world / "semantic.jsonl").write_text("".join(json.dumps({**r, "query": "square"}) + "\n" for r in lines))
    return world


def test_dense_heads_train_from_an_existing_sam_and_resume_exactly(square_world, tmp_path) -> None:
    world = _with_semantic(square_world)
    start = train_sam(_config(tmp_path / "start", world, 2))

    def config(run_dir, steps):
        c = _config(run_dir, world, steps)
        c.dense_weight, c.init_sam, c.size = 1.0, str(start), SamSize()  # size: the folder's own, not this
        return c

    straight = train_sam(config(tmp_path / "a", 4))
    train_sam(config(tmp_path / "b", 2))
    resumed = train_sam(config(tmp_path / "b", 4), resume=True)
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], load_file(str(start / "model.safetensors"))[k]) for k in a)  # it trained on
    saved = load_file(str(next((tmp_path / "a" / "checkpoints").glob("step-*")) / WEIGHTS_NAME))
    assert any(k.startswith("dense.semantic") for k in saved) and any(k.startswith("dense.colour") for k in saved)
    assert not any(k.startswith("dense") for k in a)  # the heads are dropped: a plain SAM folder
    logged = json.loads((tmp_path / "a" / "log.jsonl").read_text().splitlines()[-1])
    assert {"semantic", "colour", "bce", "dice", "time"} <= set(logged)


def test_dense_weight_without_semantic_records_is_a_clear_error(square_world, tmp_path) -> None:
    config = _config(tmp_path / "x", square_world, 2)
    config.dense_weight = 1.0
    with pytest.raises(LisaError, match="semantic"):
        train_sam(config)


def test_head_grid_follows_sams_resize_and_padding() -> None:
    from lisa.train.dense_aux import to_head_grid

    mask = torch.zeros(40, 80)  # landscape: SAM resizes to 32 x 64 in a 64 input, padding below
    mask[:, :40] = 1  # left half
    grid = to_head_grid(mask, (32, 64), 64, (16, 16))
    assert torch.allclose(grid[:8, :8], torch.ones(8, 8)) and torch.allclose(grid[:8, 8:], torch.zeros(8, 8))
    assert torch.count_nonzero(grid[8:]) == 0  # the padding is never a class


def test_dense_losses_only_score_annotated_classes() -> None:
    from lisa.train.dense_aux import DenseHeads, dense_losses

    heads = DenseHeads(8, num_classes=2)
    embeddings, pixels = torch.randn(2, 8, 4, 4), torch.randn(2, 3, 64, 64)
    only_circle = [[(0, torch.ones(16, 16))], []]
    semantic, colour = dense_losses(heads, embeddings, pixels, only_circle)
    logits, rgb = heads(embeddings)
    assert rgb.shape == (2, 3, 16, 16)
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits[0, 0], torch.ones(16, 16))
    assert torch.allclose(semantic, expected)
    assert torch.allclose(colour, ((rgb - torch.nn.functional.adaptive_avg_pool2d(pixels, 16)) ** 2).mean())


def test_validation_after_each_checkpoint_logs_a_curve_and_keeps_resume_exact(square_world, tmp_path) -> None:
    def config(run_dir, steps):
        c = _config(run_dir, square_world, steps)
        c.val_dir, c.val_count = str(square_world), 8
        return c

    straight = train_sam(config(tmp_path / "a", 4))
    train_sam(config(tmp_path / "b", 2))
    resumed = train_sam(config(tmp_path / "b", 4), resume=True)
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)  # validating changes neither weights nor RNG streams
    logged = [json.loads(line) for line in (tmp_path / "a" / "log.jsonl").read_text().splitlines()]
    curve = [(e["step"], e["val_box_miou"], e["val_point_miou"]) for e in logged if "val_box_miou" in e]
    assert [step for step, _, _ in curve] == [2, 4]  # save_every 2
    assert all(0.0 <= box <= 1.0 and 0.0 <= point <= 1.0 for _, box, point in curve)


def test_missing_val_folder_fails_before_training(square_world, tmp_path) -> None:
    config = _config(tmp_path / "x", square_world, 2)
    config.val_dir = str(tmp_path / "nowhere")
    with pytest.raises(LisaError):
        train_sam(config)
    assert not list((tmp_path / "x").glob("checkpoints/step-*"))


def test_loss_weights_set_the_mix_of_bce_and_dice(square_world) -> None:
    from lisa.model.build import build_sam_config
    from lisa.train.sam_pretrain import fresh_sam, make_batch, sam_loss

    torch.manual_seed(0)
    sam = fresh_sam(build_sam_config(SMALL))
    batch = make_batch(collect_instances(square_world), 0, 0, 3, SMALL.image_size)
    loss, parts = sam_loss(sam, batch, SMALL.image_size, bce_weight=3.0, dice_weight=0.25)
    assert loss.item() == pytest.approx(3.0 * parts["bce"] + 0.25 * parts["dice"], rel=1e-5)
    default, parts = sam_loss(sam, batch, SMALL.image_size)
    assert default.item() == pytest.approx(2.0 * parts["bce"] + 0.5 * parts["dice"], rel=1e-5)  # LISA's weights


def test_box_token_is_the_mean_of_sams_two_corner_tokens() -> None:
    from lisa.model.build import build_sam_config
    from lisa.train.sam_pretrain import box_token, fresh_sam

    torch.manual_seed(0)
    sam = fresh_sam(build_sam_config(SMALL))
    boxes = torch.tensor([[4.0, 6.0, 30.0, 40.0], [10.0, 10.0, 20.0, 50.0]])
    encoder = sam.prompt_encoder
    corners = (boxes + 0.5).reshape(2, 2, 2) / SMALL.image_size  # SAM's pixel-centre shift, normalised
    positional = sam.shared_image_embedding(corners)  # [2, 2, C]
    expected = ((positional[:, 0] + encoder.point_embed[2].weight) + (positional[:, 1] + encoder.point_embed[3].weight)) / 2
    token = box_token(sam, boxes)
    assert token.shape == (2, SMALL.prompt_dim)
    assert torch.allclose(token, expected, atol=1e-5)
    assert not torch.allclose(token[0], token[1])  # where the box is, is in the token


def test_one_token_box_batches_train_the_decoder_path_and_resume_exactly(square_world, tmp_path) -> None:
    from lisa.train.sam_pretrain import make_batch, predict_low_res

    def config(run_dir, steps):
        c = _config(run_dir, square_world, steps)
        c.box_token_every = 1  # every box batch as one token
        return c

    straight = train_sam(config(tmp_path / "a", 4))
    train_sam(config(tmp_path / "b", 2))
    resumed = train_sam(config(tmp_path / "b", 4), resume=True)
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    from transformers import SamModel

    sam = SamModel.from_pretrained(straight).eval()
    batch = make_batch(collect_instances(square_world), 0, 0, 3, SMALL.image_size)
    with torch.no_grad():
        two_tokens, _ = predict_low_res(sam, batch)
        one_token, _ = predict_low_res(sam, {**batch, "box_token": True})
    assert one_token.shape == two_tokens.shape and not torch.allclose(one_token, two_tokens)


def test_regridded_patch_embedding_sees_what_the_coarse_one_sees_of_an_upsampled_image() -> None:
    from lisa.model.build import build_sam_config
    from lisa.train.sam_pretrain import fresh_sam
    from lisa.train.sam_regrid import regrid_sam

    torch.manual_seed(0)
    coarse = fresh_sam(build_sam_config(SMALL))  # patch 16, 64 px
    fine = regrid_sam(coarse, 8)
    assert fine.config.vision_config.patch_size == 8 and fine.config.vision_config.window_size == 2 * SMALL.window
    image = torch.randn(1, 3, 64, 64)
    upsampled = torch.nn.functional.interpolate(image, scale_factor=2, mode="nearest")
    # the fine kernel on the image == the coarse kernel on the image upsampled 2x (nearest)
    expected = torch.nn.functional.conv2d(upsampled, coarse.vision_encoder.patch_embed.projection.weight,
                                          coarse.vision_encoder.patch_embed.projection.bias, stride=16)
    assert torch.allclose(fine.vision_encoder.patch_embed.projection(image), expected, atol=1e-4)
    assert torch.equal(fine.mask_decoder.upscale_conv1.weight, coarse.mask_decoder.upscale_conv1.weight)
    assert not fine.shared_image_embedding.positional_embedding.requires_grad  # frozen stays frozen
    with torch.no_grad():
        masks = fine(pixel_values=torch.randn(1, 3, 64, 64), input_boxes=torch.tensor([[[4.0, 4.0, 40.0, 40.0]]]),
                     multimask_output=False).pred_masks
    assert masks.shape[-2:] == (32, 32)  # 4x the 8x8 embedding: twice the coarse SAM's 16x16 masks


def test_a_sam_stage_trains_on_from_a_regridded_sam(square_world, tmp_path) -> None:
    from transformers import SamModel

    start = train_sam(_config(tmp_path / "start", square_world, 2))
    config = _config(tmp_path / "fine", square_world, 2)
    config.init_sam, config.regrid_patch = str(start), 8
    out = SamModel.from_pretrained(train_sam(config))
    assert out.config.vision_config.patch_size == 8
    assert out.config.prompt_encoder_config.image_embedding_size == SMALL.image_size // 8
    config = _config(tmp_path / "bad", square_world, 2)
    config.regrid_patch = 8
    with pytest.raises(LisaError, match="init_sam"):
        train_sam(config)
