"""The VLM seam with Qwen2.5-VL and Qwen3-VL (dynamic resolution, 3-D rotary positions;
Qwen3-VL's DeepStack) on tiny random-weight models built in-process: forward and loss,
training, forced-[SEG] generation, save -> load, batched = single, parity with transformers'
own forward, and the commands (init, train, resume, export, segment, eval)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from _training import fixed_batch_losses
from lisa.data.collate import Collator
from lisa.data.jsonl import JsonlTrain
from lisa.inference.pipeline import LisaPipeline
from lisa.model import vlm as vlm_ops
from lisa.model.build import ModelSize
from lisa.model.build_qwen import build_qwen_model, write_tiny_qwen_model
from lisa.model.lisa import LisaModel
from lisa.model.prompting import PromptBuilder
from lisa.model.static_decode import StaticDecoder
from lisa.model.vlms import adapter_for
from lisa.train.config import LoraSection, config_from_dict
from lisa.train.lora import add_lora, lora_prefix
from lisa.train.synthetic import write_synthetic
from lisa.train.trainable import set_trainable


FAMILIES = ["qwen2_5_vl", "qwen3_vl"]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory: pytest.TempPathFactory, family: str) -> Path:
    return write_tiny_qwen_model(tmp_path_factory.mktemp(f"tiny-{family}"), seed=0, family=family)


@pytest.fixture(scope="module")
def qwen_pipe(qwen_dir: Path) -> LisaPipeline:
    return LisaPipeline.from_pretrained(qwen_dir, device="cpu", dtype="float32", threads=None)


@pytest.fixture(scope="module")
def qwen_batch(tmp_path_factory: pytest.TempPathFactory, family: str):
    data = write_synthetic(tmp_path_factory.mktemp("shapes"), images=4, size=48, val_images=0)
    torch.manual_seed(0)
    model, tokenizer, processor = build_qwen_model(ModelSize(), family=family)
    loader = JsonlTrain(data, "train", max_queries=2)
    samples = [loader.sample(i, random.Random(i)) for i in range(2)]
    batch = Collator(PromptBuilder(tokenizer, model.config), processor, model.config.sam_image_size)(samples)
    return model, batch


def _images() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (40, 60, 3), dtype=np.uint8), rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)]


def test_image_tokens_follow_each_image(qwen_pipe: LisaPipeline) -> None:
    model = qwen_pipe.model
    images = model.adapter.image_inputs(_images(), qwen_pipe.image_processor)
    counts = model.adapter.image_token_counts(model.config.vlm_config(), images)
    features = model.adapter.image_features(model.vlm, images)
    assert counts == [f.shape[0] for f in features] and counts[0] != counts[1]
    prompt = qwen_pipe.builder.build([("the cat", None)], image_tokens=counts[1])
    assert prompt.input_ids.count(model.config.image_token_id) == counts[1]


def test_positions_match_transformers_forward(qwen_pipe: LisaPipeline) -> None:
    """Left-padded rows with images of different sizes: the hidden states of lisa-seg's splice,
    3-D positions (and DeepStack inputs) equal the HF model's own forward (its get_rope_index,
    its splice)."""
    model, builder = qwen_pipe.model, qwen_pipe.builder
    images = model.adapter.image_inputs(_images(), qwen_pipe.image_processor)
    counts = model.adapter.image_token_counts(model.config.vlm_config(), images)
    prompts = [builder.build([(q, None)], image_tokens=n).input_ids for q, n in zip(["a cat", "the big red dog"], counts)]
    length = max(len(p) for p in prompts)
    ids = torch.tensor([[0] * (length - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (length - len(p)) + [1] * len(p) for p in prompts])
    index = torch.tensor([0, 1])
    with torch.no_grad():
        embeds, lm_inputs = model.conversation_inputs(ids, images.pixels, index, images.grids)
        positions = model.position_ids(ids, mask, index, images.grids)
        ours = vlm_ops.language_hidden(model.vlm, embeds, mask, positions, lm_inputs=lm_inputs)
        theirs = model.vlm.model(
            input_ids=ids, attention_mask=mask, pixel_values=images.pixels, image_grid_thw=images.grids,
            mm_token_type_ids=(ids == model.config.image_token_id).int(),
        ).last_hidden_state
    assert positions.shape == (3, 2, length)
    real = mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], rtol=1e-5, atol=1e-5)


def test_teacher_forced_forward_and_loss(qwen_batch) -> None:
    model, batch = qwen_batch
    assert batch.vlm_grids is not None and batch.vlm_grids.shape == (2, 3)
    with torch.no_grad():
        plain = model(batch, share_prefix=False)
        shared = model(batch, share_prefix=True)
    assert plain.num_masks > 0 and torch.isfinite(plain.loss)
    assert all(torch.isfinite(x) for x in (plain.ce_loss, plain.bce_loss, plain.dice_loss))
    torch.testing.assert_close(shared.loss, plain.loss, rtol=1e-5, atol=1e-6)
    assert [m.shape[-2:] for m in plain.mask_logits] == [tuple(s) for s in batch.original_sizes]


def test_lora_on_language_model_only_and_training_lowers_loss(qwen_batch) -> None:
    base, batch = qwen_batch
    model = LisaModel(base.config)
    model.load_state_dict(base.state_dict())
    add_lora(model, LoraSection())
    set_trainable(model, [model.config.seg_token_id])
    lora = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    assert len(lora) == 8 and all(n.startswith(lora_prefix(model)) for n in lora)
    assert not any(n.startswith("vlm.model.visual.") for n, p in model.named_parameters() if p.requires_grad)
    losses = fixed_batch_losses(model.train(), batch, steps=10)
    assert losses[-1] < 0.9 * losses[0], losses
    # gradient checkpointing (the training config's switch) runs the same step
    model.adapter.language_model(model.vlm).activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    model(batch).loss.backward()


def _forced_seg(pipe: LisaPipeline) -> list[int]:
    vocab = pipe.model.vlm.get_output_embeddings().weight.shape[0]
    return [i for i in range(vocab) if i != pipe.model.config.seg_token_id]


def test_generation_with_forced_seg_gives_masks_at_original_size(qwen_pipe: LisaPipeline) -> None:
    saved = qwen_pipe.banned_ids
    qwen_pipe.banned_ids = _forced_seg(qwen_pipe)
    try:
        results = qwen_pipe(_images(), ["the cat", "the dog"], max_new_tokens=2)
    finally:
        qwen_pipe.banned_ids = saved
    assert [r.text for r in results] == ["[SEG] [SEG]"] * 2
    assert [r.masks.shape for r in results] == [(2, 40, 60), (2, 64, 48)]


def test_generated_seg_states_equal_teacher_forced(qwen_pipe: LisaPipeline) -> None:
    """Generated tokens continue the 3-D positions as text (last + 1): the [SEG] states of the
    eager and static decoders equal a teacher-forced pass over prompt + answer."""
    model, builder = qwen_pipe.model, qwen_pipe.builder
    arrays = _images()
    images = model.adapter.image_inputs(arrays, qwen_pipe.image_processor)
    counts = model.adapter.image_token_counts(model.config.vlm_config(), images)
    prompts = [builder.build([(q, None)], image_tokens=n).input_ids for q, n in zip(["a cat", "the big red dog"], counts)]
    sam = torch.zeros(2, 3, model.config.sam_image_size, model.config.sam_image_size)
    encoded = model.encode_images(images.pixels, sam, [(8, 8)] * 2, [(8, 8)] * 2, images.grids)
    index = torch.tensor([0, 1])

    def pad(rows):
        length = max(len(r) for r in rows)
        return (torch.tensor([[0] * (length - len(r)) + r for r in rows]),
                torch.tensor([[0] * (length - len(r)) + [1] * len(r) for r in rows]))

    ids, mask = pad(prompts)
    banned, seg = _forced_seg(qwen_pipe), model.config.seg_token_id
    eager = model.generate_segmentation(ids, mask, encoded, index, 3, builder.stop_ids, banned)
    static = model.generate_segmentation(ids, mask, encoded, index, 3, builder.stop_ids, banned,
                                         decoder=StaticDecoder(model.vlm, use_graphs=False))
    ids_tf, mask_tf = pad([p + [seg] * 3 for p in prompts])
    forced = model.teacher_forced_segmentation(ids_tf, mask_tf, encoded, index)
    for a, b, c in zip(eager.seg_hidden, static.seg_hidden, forced.seg_hidden):
        assert a.shape == (3, model.config.hidden_size)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(a, c, rtol=1e-5, atol=1e-5)


def test_batched_equals_single(qwen_pipe: LisaPipeline) -> None:
    images, queries = _images(), ["the cat", "the big red dog"]
    qwen_pipe.clear_cache()
    batched = qwen_pipe(images, queries, answers=["Sure, [SEG].", "[SEG]"])
    generated = qwen_pipe(images, queries, max_new_tokens=4)
    for i in range(2):
        qwen_pipe.clear_cache()
        single = qwen_pipe(images[i], queries[i], answers=["Sure, [SEG].", "[SEG]"][i])
        assert np.array_equal(single.masks, batched[i].masks)
        np.testing.assert_allclose(single.scores, batched[i].scores, atol=1e-5)
        assert qwen_pipe(images[i], queries[i], max_new_tokens=4).text == generated[i].text


def test_save_load_round_trip_is_bit_exact(qwen_pipe: LisaPipeline, tmp_path: Path) -> None:
    qwen_pipe.model.save_pretrained(tmp_path)
    loaded = LisaModel.from_pretrained(tmp_path)
    assert type(loaded.adapter) is type(adapter_for(qwen_pipe.model.config.vlm))
    state, again = qwen_pipe.model.state_dict(), loaded.state_dict()
    assert state.keys() == again.keys() and all(torch.equal(state[k], again[k]) for k in state)
    other = LisaPipeline(loaded, qwen_pipe.tokenizer, qwen_pipe.image_processor)
    qwen_pipe.clear_cache()
    a = qwen_pipe(_images()[0], "the cat", answers="[SEG]")
    b = other(_images()[0], "the cat", answers="[SEG]")
    assert np.array_equal(a.masks, b.masks) and np.array_equal(a.scores, b.scores)


def test_unknown_vlm_is_one_line_error() -> None:
    from lisa.errors import LisaError

    with pytest.raises(LisaError, match="unsupported VLM model_type 'blip'; supported: llava, qwen2_5_vl, qwen3_vl"):
        adapter_for({"model_type": "blip"})


def test_train_validate_resume_export(qwen_dir: Path, tmp_path: Path) -> None:
    """`lisa train` from a Qwen-VL folder: LoRA training with validation (the eval pipeline); a
    run stopped after step 2 and resumed ends bit for bit where the uninterrupted run does; the
    exported folder's masks equal the trained model's."""
    import shutil

    import yaml
    from safetensors.torch import load_file

    from lisa.train.checkpoint import WEIGHTS_NAME, latest_checkpoint
    from lisa.train.export import export
    from lisa.train.trainer import Trainer

    data = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml").read_text())
    data.update(run_dir=str(tmp_path / "run"), save_every=1, keep_last=3, val_every=3)
    data["model"] = {"base": str(qwen_dir), "gradient_checkpointing": False}
    data["data"][0].update(images=4)
    data["optim"].update(max_steps=3, warmup_steps=1, lr=1e-2, batch_size=1, grad_accum=1)
    data["val"]["limit"] = 2
    trainer = Trainer(config_from_dict(data), progress=False)
    trainer.fit()
    # The same run stopped after step 2's checkpoint, then resumed.
    shutil.copytree(tmp_path / "run", tmp_path / "stopped")
    shutil.rmtree(latest_checkpoint(tmp_path / "stopped" / "checkpoints"))
    data["run_dir"] = str(tmp_path / "stopped")
    Trainer(config_from_dict(data), resume=True, progress=False).fit()
    final_a = latest_checkpoint(tmp_path / "run" / "checkpoints")
    final_b = latest_checkpoint(tmp_path / "stopped" / "checkpoints")
    assert final_a.name == final_b.name == "step-00000003"
    a, b = load_file(str(final_a / WEIGHTS_NAME)), load_file(str(final_b / WEIGHTS_NAME))
    assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a)

    out = export(tmp_path / "run", tmp_path / "exported")
    trained = LisaPipeline(trainer.unwrapped, trainer.tokenizer, trainer.processor)
    standalone = LisaPipeline.from_pretrained(out, device="cpu", dtype="float32", threads=None)
    image = sorted((tmp_path / "run" / "data" / "val").glob("val_*[0-9].png"))[0]
    a, b = trained(image, "the red square", answers="Sure, [SEG]."), standalone(image, "the red square", answers="Sure, [SEG].")
    assert a.masks.shape == b.masks.shape == (1, 64, 64) and np.array_equal(a.masks, b.masks)


def test_segment_and_eval_commands(qwen_dir: Path, tmp_path: Path) -> None:
    from PIL import Image

    from lisa.cli import main

    Image.fromarray(_images()[0]).save(tmp_path / "in.png")
    code = main(["segment", str(tmp_path / "in.png"), "the cat", "--model", str(qwen_dir), "--device", "cpu",
                 "--threads", "1", "--max-new-tokens", "4", "--out", str(tmp_path / "seg")])
    assert code == 0 and (tmp_path / "seg" / "result.json").is_file()
    data = write_synthetic(tmp_path / "shapes", images=2, size=48, val_images=2)
    code = main(["eval", "--dataset", "jsonl", "--data-dir", str(data), "--split", "val", "--model", str(qwen_dir),
                 "--teacher-forced", "--device", "cpu", "--threads", "1", "--no-progress", "--out", str(tmp_path / "eval")])
    assert code == 0


def test_init_from_hf_folder(tmp_path: Path, family: str) -> None:
    """`lisa init --vlm QWEN_DIR --sam SAM.pth`: the VLM's weights unchanged, a working pipeline."""
    from lisa.cli import main
    from lisa.interop.fixtures import write_sam_pth
    from lisa.interop.qwen_vl_hf import qwen_vl_key

    torch.manual_seed(0)
    base, tokenizer, processor = build_qwen_model(ModelSize(), family=family)
    folder = tmp_path / "qwen"
    base.vlm.save_pretrained(str(folder))
    tokenizer.save_pretrained(str(folder))
    processor.save_pretrained(str(folder))
    write_sam_pth(tmp_path / "sam.pth")
    out = tmp_path / "out"
    assert main(["init", "--vlm", str(folder), "--sam", str(tmp_path / "sam.pth"), "--out", str(out)]) == 0
    model = LisaModel.from_pretrained(out)
    assert model.config.chat_template == "tokenizer" and model.config.vlm["model_type"] == family
    expected, got = base.vlm.state_dict(), model.vlm.state_dict()
    seg = model.config.seg_token_id  # [SEG] (already in this tokenizer) gets a fresh row
    differ = [k for k, v in expected.items() if not torch.equal(got[k], v)]
    assert differ == ["model.language_model.embed_tokens.weight", "lm_head.weight"]
    assert all(torch.equal(got[k][:seg], expected[k][:seg]) for k in differ)
    result = LisaPipeline.from_pretrained(out, device="cpu", dtype="float32", threads=None)(_images()[1], "the dog", answers="[SEG].")
    assert result.masks.shape == (1, 64, 48)
    # transformers 4.x key layout of released Qwen2.5-VL folders
    assert qwen_vl_key("model.layers.0.mlp.up_proj.weight") == "vlm.model.language_model.layers.0.mlp.up_proj.weight"
    assert qwen_vl_key("visual.blocks.0.attn.qkv.weight") == "vlm.model.visual.blocks.0.attn.qkv.weight"
    assert qwen_vl_key("model.visual.merger.ln_q.weight") == "vlm.model.visual.merger.ln_q.weight"
    assert qwen_vl_key("lm_head.weight") == "vlm.lm_head.weight"


def test_no_vlm_internals_outside_the_adapters() -> None:
    """Code outside lisa.model.vlms (and the converters in lisa.interop, the builders) names no
    VLM class, attribute path or processor class: it goes through the adapter."""
    import re

    from _code_scan import names_outside

    allowed = ("model/vlms/", "interop/", "model/build.py", "model/build_qwen.py")
    forbidden = re.compile(r"vlm\.model\b|model\.language_model|model\.visual|multi_modal_projector|vision_tower\.|"
                           r"Llava\w*For|Qwen\w*VL\w*For|CLIPImageProcessor|Qwen2VLImageProcessor|get_rope_index|"
                           r"get_image_features")
    offenders = names_outside(allowed, forbidden)
    assert not offenders, offenders
