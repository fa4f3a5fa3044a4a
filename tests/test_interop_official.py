"""Released LISA checkpoints: direct load and conversion give the model built directly."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sentencepiece
import torch

from lisa.cli import main
from lisa.errors import LisaError
from lisa.inference.pipeline import LisaPipeline
from lisa.interop.clip import clip_image_processor
from lisa.interop.official import load_official
from lisa.interop.sp_tokenizer import load_llama_tokenizer
from lisa.model.lisa import LisaModel
from lisa.model.prompting import LLAVA_V1_SYSTEM, PromptBuilder
from official_fixtures import make_image, write_tiny_official

QUERY = "What is dog in this image? Please output segmentation mask."


@pytest.fixture(scope="module")
def tiny_bin(tmp_path_factory):
    return write_tiny_official(tmp_path_factory.mktemp("bin"), shards=3, fmt="bin")


def _expected_pipeline(tiny):
    tokenizer = load_llama_tokenizer(tiny.directory)
    return LisaPipeline(tiny.model, tokenizer, clip_image_processor(tiny.clip_dir))


def _assert_same_outputs(expected: LisaPipeline, actual: LisaPipeline) -> None:
    image = make_image()
    forced_e = expected(image, QUERY, answers="Sure, [SEG].")
    forced_a = actual(image, QUERY, answers="Sure, [SEG].")
    assert forced_e.masks.shape == forced_a.masks.shape == (1, 48, 40)
    np.testing.assert_array_equal(forced_e.masks, forced_a.masks)
    np.testing.assert_allclose(forced_e.scores, forced_a.scores, atol=1e-6)
    generated_e = expected(image, QUERY, max_new_tokens=6)
    generated_a = actual(image, QUERY, max_new_tokens=6)
    assert generated_e.text == generated_a.text
    np.testing.assert_array_equal(generated_e.masks, generated_a.masks)


def _logits(model: LisaModel, pipeline: LisaPipeline) -> torch.Tensor:
    prompt = pipeline.builder.build([(QUERY, "[SEG].")])
    ids = torch.tensor([prompt.input_ids])
    pixels = pipeline.image_processor(images=[make_image()], return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        embeds = model.embed_conversations(ids, pixels, torch.tensor([0]))
        return model.vlm(inputs_embeds=embeds).logits


def test_load_official_matches_direct(tiny_bin):
    model, tokenizer, processor = load_official(tiny_bin.directory, tiny_bin.clip_dir, torch.float32, "cpu")
    expected = tiny_bin.model.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert model.config.seg_token_id == 403 and tokenizer.convert_tokens_to_ids("[SEG]") == 403
    assert (model.config.image_start_id, model.config.image_end_id) == (401, 402)
    assert model.config.projector == "linear" and model.config.strip_text_around_tokens
    assert processor.crop_size == {"height": 32, "width": 32}
    pipeline = LisaPipeline.from_pretrained(tiny_bin.directory, device="cpu", dtype="fp32", vision_tower=tiny_bin.clip_dir)
    assert torch.equal(_logits(pipeline.model, pipeline), _logits(tiny_bin.model, _expected_pipeline(tiny_bin)))
    _assert_same_outputs(_expected_pipeline(tiny_bin), pipeline)


def test_convert_sharded_safetensors_via_cli(tmp_path):
    tiny = write_tiny_official(tmp_path / "src", shards=4, fmt="safetensors", seed=1)
    out = tmp_path / "converted"
    argv = ["convert", "official", "--src", str(tiny.directory), "--vision-tower", str(tiny.clip_dir), "--out", str(out)]
    assert main(argv) == 0
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) == 5  # 4 LISA shards + the CLIP tower
    pipeline = LisaPipeline.from_pretrained(out, device="cpu", dtype="fp32")
    for name, tensor in pipeline.model.state_dict().items():
        assert torch.equal(tensor, tiny.model.state_dict()[name]), name
    assert pipeline.tokenizer.convert_tokens_to_ids(["<im_start>", "<im_end>", "[SEG]"]) == [401, 402, 403]
    _assert_same_outputs(_expected_pipeline(tiny), pipeline)
    assert main(argv) == 2  # refuses to overwrite


def test_bf16_load_keeps_released_values(tiny_bin):
    model, _, _ = load_official(tiny_bin.directory, tiny_bin.clip_dir, torch.bfloat16, "cpu")
    assert model.dtype == torch.bfloat16
    weight = model.seg_head.fc1.weight
    assert torch.equal(weight.float(), tiny_bin.model.seg_head.fc1.weight)
    rope = model.vlm.model.language_model.rotary_emb.inv_freq
    assert rope.dtype == torch.float32  # exact, as the original computes it (reference 11)
    assert torch.equal(rope, tiny_bin.model.vlm.model.language_model.rotary_emb.inv_freq)


def _rewrite_shard(directory, edit) -> None:
    path = directory / "pytorch_model-00001-of-00003.bin"
    state = torch.load(path, weights_only=True)
    edit(state)
    torch.save(state, path)


def test_missing_and_unexpected_keys_are_listed(tmp_path):
    tiny = write_tiny_official(tmp_path, shards=3, fmt="bin")
    index_path = tiny.directory / "pytorch_model.bin.index.json"
    first = json.loads(index_path.read_text())["weight_map"]
    victim = next(k for k, f in first.items() if f.endswith("00001-of-00003.bin") and "embed" not in k)
    _rewrite_shard(tiny.directory, lambda s: (s.pop(victim), s.update({"model.bogus.weight": torch.zeros(1)})))
    with pytest.raises(LisaError) as error:
        load_official(tiny.directory, tiny.clip_dir)
    assert "model.bogus.weight" in str(error.value) and "missing 1 keys" in str(error.value)
    out = tmp_path / "o"
    assert main(["convert", "official", "--src", str(tiny.directory), "--vision-tower", str(tiny.clip_dir), "--out", str(out)]) == 2
    assert not list(out.glob("*.safetensors")) and not list(out.glob("*.tmp"))


def _official_431_ids(sp: sentencepiece.SentencePieceProcessor, text: str, added: dict[str, int]) -> list[int]:
    """What the 4.31 slow tokenizer gives: split on added tokens, strip text touching the
    non-special ones, sentencepiece-encode every remaining piece on its own."""
    pieces: list[str | int] = [text]
    for token, index in added.items():
        split: list[str | int] = []
        for piece in pieces:
            if isinstance(piece, int):
                split.append(piece)
                continue
            for n, part in enumerate(piece.split(token)):
                if n:
                    split.append(index)
                split.append(part)
        pieces = split
    ids: list[int] = []
    strippers = {v for k, v in added.items() if k != "</s>"}
    for n, piece in enumerate(pieces):
        if isinstance(piece, int):
            ids.append(piece)
            continue
        if n > 0 and pieces[n - 1] in strippers:
            piece = piece.lstrip()
        if n + 1 < len(pieces) and pieces[n + 1] in strippers:
            piece = piece.rstrip()
        if piece:
            ids += sp.encode(piece)
    return ids


def test_prompt_tokens_follow_the_431_rule(tiny_bin):
    model, tokenizer, _ = load_official(tiny_bin.directory, tiny_bin.clip_dir)
    sp = sentencepiece.SentencePieceProcessor(model_file=str(tiny_bin.directory / "tokenizer.model"))
    added = {"<im_start>": 401, "<im_end>": 402, "[SEG]": 403, "</s>": 2}
    cfg = model.config
    built = PromptBuilder(tokenizer, cfg).build([(QUERY, "Sure, [SEG].")])
    # tokenizer_image_token: BOS, chunks split on <image>, joined by the image placeholder
    before = f"{LLAVA_V1_SYSTEM} USER: <im_start>"
    after = f"<im_end>\n{QUERY} ASSISTANT: Sure, [SEG].</s>"
    expected = [1] + _official_431_ids(sp, before, added) + [cfg.image_token_id] * cfg.num_image_tokens
    expected += _official_431_ids(sp, after, added)
    assert built.input_ids == expected
    seg_at = built.input_ids.index(403)
    assert built.input_ids[seg_at + 1:] == sp.encode(".") + [2]
    assert built.input_ids[seg_at - 1] == sp.encode(" ASSISTANT: Sure,")[-1]


def test_not_a_lisa_folder(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(LisaError, match="lisa init"):
        load_official(tmp_path, tmp_path)
