"""The staged from-scratch recipe: the "vlm" recipe, a trained SAM swapped in, JSONL file
selection and the tokenizer corpus."""

from __future__ import annotations

import json

import pytest

from lisa.data.corpus import corpus_texts
from lisa.data.jsonl import jsonl_files
from lisa.errors import LisaError
from lisa.model.build import ModelSize, build_model
from lisa.train.config import config_from_dict
from lisa.train.model_setup import swap_sam
from lisa.model.build import SamSize, build_sam_config
from lisa.train.sam_pretrain import fresh_sam
from lisa.train.trainable import set_trainable


def test_vlm_recipe_trains_the_whole_vlm_and_nothing_of_sam() -> None:
    model, _, _ = build_model(ModelSize())
    set_trainable(model, None, "vlm")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if n.startswith("vlm.")}
    assert any(n.startswith("vlm.model.vision_tower.") for n in trainable)
    assert any(n.startswith("vlm.model.multi_modal_projector.") for n in trainable)


def test_vlm_language_recipe_freezes_the_vision_tower_and_projector() -> None:
    model, _, _ = build_model(ModelSize())
    set_trainable(model, None, "vlm_language")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    language = {n for n, _ in model.named_parameters() if n.startswith("vlm.model.language_model.")}
    assert language and language <= trainable
    assert trainable - language <= {"vlm.lm_head.weight"}  # tied to the embeddings, which train
    assert not any("vision_tower" in n or "multi_modal_projector" in n or n.startswith(("sam.", "seg_head."))
                   for n in trainable)


def test_unknown_recipe_is_refused() -> None:
    data = {"run_dir": "r", "model": {"build": {}}, "data": [{"type": "jsonl", "dir": "d"}], "recipe": "everything"}
    with pytest.raises(LisaError, match="recipe 'everything' is unknown"):
        config_from_dict(data)


def test_lora_can_be_switched_off() -> None:
    data = {"run_dir": "r", "model": {"build": {}}, "data": [{"type": "jsonl", "dir": "d"}], "lora": None}
    assert config_from_dict(data).lora is None


def test_swap_sam_replaces_weights_config_and_resizes_the_seg_head() -> None:
    model, _, _ = build_model(ModelSize())
    size = SamSize(hidden=32, layers=2, heads=2, image_size=64, patch=16, window=2, prompt_dim=48, decoder_mlp=64, decoder_heads=2)
    sam = fresh_sam(build_sam_config(size))
    swap_sam(model, sam)
    assert model.sam is sam
    assert model.config.out_dim == 48 and model.config.sam["prompt_encoder_config"]["hidden_size"] == 48
    assert model.seg_head.fc2.out_features == 48


def test_fresh_sam_has_a_unit_scale_fixed_positional_matrix() -> None:
    sam = fresh_sam(build_sam_config(SamSize(hidden=64, layers=2, heads=2, image_size=64, window=2, prompt_dim=32,
                                              decoder_mlp=64, decoder_heads=2)))
    positional = sam.shared_image_embedding.positional_embedding
    assert not positional.requires_grad
    assert 0.5 < positional.std().item() < 2.0  # HF's own init would give std ~32 here


def test_jsonl_file_selection(tmp_path) -> None:
    for name in ("vqa", "referring", "semantic"):
        (tmp_path / f"{name}.jsonl").write_text("")
    assert [f.stem for f in jsonl_files(tmp_path, None, ["vqa", "semantic"])] == ["semantic", "vqa"]
    with pytest.raises(LisaError, match="no facts.jsonl"):
        jsonl_files(tmp_path, None, ["facts"])


def test_corpus_reads_jsonl_reasonseg_and_explanatory(tmp_path) -> None:
    (tmp_path / "a.jsonl").write_text(json.dumps({"query": "the red star", "answer": "Sure."}) + "\n\n")
    (tmp_path / "b.json").write_text(json.dumps({"text": ["what keeps you dry?"], "shapes": []}))
    (tmp_path / "explanatory.json").write_text(json.dumps([{"image": "x.jpg", "query": "q", "outputs": "because"}]))
    texts = corpus_texts([tmp_path])
    assert texts == ["the red star", "Sure.", "what keeps you dry?", "q", "because"]
    assert corpus_texts([tmp_path / "a.jsonl"]) == ["the red star", "Sure."]
    assert corpus_texts([tmp_path / "*.json"]) == ["what keeps you dry?", "q", "because"]
    with pytest.raises(LisaError, match="does not exist"):
        corpus_texts([tmp_path / "nope"])
    with pytest.raises(LisaError, match="matches no file"):
        corpus_texts([tmp_path / "nope_*.json"])


@pytest.mark.parametrize("config", ["2-vlm-v2.yaml", "2-vlm.yaml"])
def test_stage2_tokenizer_corpus_ignores_families_added_after_the_shipped_tokenizer(
        tmp_path, monkeypatch, config: str) -> None:
    """The shipped lisa-tiny's tokenizer was trained on data/shapes before locate.jsonl and
    present.jsonl existed: the stage-2 corpus must read exactly those texts from today's world,
    or a fresh run of the recipe builds another tokenizer (other ids, other model)."""
    import shutil
    from pathlib import Path

    import yaml

    from lisa.data.shapes.generate import generate_split

    generate_split(tmp_path / "data" / "shapes", "train", n=6, seed=0, size=128)
    paths = yaml.safe_load((Path(__file__).parents[1] / "configs" / "tiny-shapes" / config).read_text())
    paths = paths["model"]["tokenizer_corpus"]
    monkeypatch.chdir(tmp_path)
    texts = corpus_texts([Path(p) for p in paths])
    earlier = tmp_path / "earlier"  # the folder as it was: without the later families
    shutil.copytree(tmp_path / "data", earlier / "data")
    for name in ("locate.jsonl", "present.jsonl"):
        (earlier / "data" / "shapes" / "train" / name).unlink()
    monkeypatch.chdir(earlier)
    folder_paths = [Path("data/shapes/train"), Path("data/shapes/facts.jsonl"), Path("data/shapes/explanatory/train.json")]
    assert texts == corpus_texts(folder_paths)


def test_sam_encoder_recipe_trains_the_encoder_through_the_lisa_loss(tmp_path) -> None:
    import random

    from lisa.data.collate import Collator
    from lisa.data.jsonl import JsonlTrain
    from lisa.model.prompting import PromptBuilder
    from lisa.train.synthetic import write_synthetic

    data = write_synthetic(tmp_path / "shapes", images=2, size=48, val_images=0)
    model, tokenizer, processor = build_model(ModelSize())
    set_trainable(model, None, "lisa_sam_encoder")
    loader = JsonlTrain(data, "train", max_queries=1)
    batch = Collator(PromptBuilder(tokenizer, model.config), processor, model.config.sam_image_size)(
        [loader.sample(0, random.Random(0))])
    model.train()(batch).loss.backward()
    encoder_grads = [p.grad for p in model.sam.vision_encoder.parameters() if p.requires_grad]
    assert encoder_grads and any(g is not None and g.abs().sum() > 0 for g in encoder_grads)
    assert not any(p.requires_grad for p in model.sam.prompt_encoder.parameters())


def test_sam_encoder_recipe_refuses_cached_embeddings() -> None:
    data = {"run_dir": "r", "model": {"build": {}}, "data": [{"type": "jsonl", "dir": "d"}],
            "recipe": "lisa_sam_encoder", "precompute_sam_embeddings": True}
    with pytest.raises(LisaError, match="precompute_sam_embeddings: false"):
        config_from_dict(data)


def test_mask_path_recipe_trains_only_the_seg_head_and_mask_decoder(tmp_path_factory) -> None:
    import torch
    from _training import fixed_batch_losses, model_and_training_batch

    model, batch = model_and_training_batch(tmp_path_factory)
    set_trainable(model, [model.config.seg_token_id], "mask_path")  # [SEG]'s rows stay frozen too
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any(n.startswith("seg_head.") for n in trainable)
    assert any(n.startswith("sam.mask_decoder.") for n in trainable)
    assert all(n.startswith(("seg_head.", "sam.mask_decoder.")) for n in trainable), trainable
    vlm = {n: p.detach().clone() for n, p in model.vlm.named_parameters()}
    head = {n: p.detach().clone() for n, p in model.seg_head.named_parameters()}
    fixed_batch_losses(model, batch, steps=2)
    for name, param in model.vlm.named_parameters():  # the text and the [SEG] states: the base's, bit for bit
        assert torch.equal(param, vlm[name]), name
    assert any(not torch.equal(p, head[n]) for n, p in model.seg_head.named_parameters())


@pytest.mark.parametrize("extra", [{"lora": {"r": 4}}, {"lora": None, "model": {"build": {}, "full_embeddings": True}}])
def test_mask_path_recipe_refuses_what_would_train_the_vlm(extra) -> None:
    data = {"run_dir": "r", "model": {"build": {}}, "data": [{"type": "jsonl", "dir": "d"}], "recipe": "mask_path",
            **extra}
    with pytest.raises(LisaError, match="recipe mask_path trains no part of the VLM"):
        config_from_dict(data)
    assert config_from_dict({**data, "lora": None, "model": {"build": {}}}).recipe == "mask_path"


def _trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_vision_recipe_adds_the_vision_tower_and_projector_to_the_papers_set(tmp_path_factory) -> None:
    """lisa_vision: the paper's recipe plus Llava's vision tower and projector, and the mask loss's
    gradient reaches them (a vision side that gets no gradient would train exactly as "lisa")."""
    import torch
    from _training import fixed_batch_losses, model_and_training_batch

    model, batch = model_and_training_batch(tmp_path_factory)
    set_trainable(model, None, "lisa")
    paper = _trainable(model)
    set_trainable(model, None, "lisa_vision")
    vision = {n for n, _ in model.named_parameters()
              if n.startswith(("vlm.model.vision_tower.", "vlm.model.multi_modal_projector."))}
    assert vision and _trainable(model) == paper | vision
    before = {n: p.detach().clone() for n, p in model.named_parameters() if n in vision}
    fixed_batch_losses(model, batch, steps=1)
    moved = {n for n, p in model.named_parameters() if n in vision and not torch.equal(p, before[n])}
    assert any(n.startswith("vlm.model.vision_tower.") for n in moved)
    assert any(n.startswith("vlm.model.multi_modal_projector.") for n in moved)


def test_vision_recipe_refuses_a_vlm_whose_vision_modules_are_unknown(monkeypatch) -> None:
    model, _, _ = build_model(ModelSize())
    monkeypatch.setattr(type(model.adapter), "vision_module_names", ())
    with pytest.raises(LisaError, match="trains the VLM's vision side, but LlavaAdapter names no vision module"):
        set_trainable(model, None, "lisa_vision")


def test_vlm_recipe_with_the_mask_path_trains_the_whole_vlm_and_the_papers_mask_parts() -> None:
    model, _, _ = build_model(ModelSize())
    set_trainable(model, None, "lisa")
    paper = _trainable(model)
    set_trainable(model, None, "lisa_vlm")
    vlm = {n for n, _ in model.named_parameters() if n.startswith("vlm.")}
    assert _trainable(model) == paper | vlm
    assert not any(n.startswith(("sam.vision_encoder.", "sam.prompt_encoder.")) for n in _trainable(model))


def test_vlm_recipe_with_the_mask_path_refuses_lora() -> None:
    data = {"run_dir": "r", "model": {"build": {}}, "data": [{"type": "jsonl", "dir": "d"}], "recipe": "lisa_vlm"}
    with pytest.raises(LisaError, match="recipe lisa_vlm trains the whole VLM: set lora: null"):
        config_from_dict(data)  # lora defaults to rank 8
    assert config_from_dict({**data, "lora": None}).recipe == "lisa_vlm"
