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
    assert rope.dtype == torch.float32  # exact, as the original computes it (the 4.31 LlamaRotaryEmbedding builds cos/sin from an fp32 inv_freq)
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


def _official_style_generate(model: LisaModel, pipeline: LisaPipeline, image: np.ndarray, max_new_tokens: int):
    """The generated path as the original ``LISAForCausalLM.evaluate`` runs it, written out
    step by step: no KV cache (every step re-runs the LLM over prompt + generated text),
    greedy, stop at EOS; then the final-norm hidden state of the full sequence at the position
    *before* each [SEG] -> text_hidden_fcs -> SAM's decoder with the no-mask dense prompt and
    one output mask -> postprocess_masks (bilinear to the SAM input size, crop the padding,
    bilinear to the original size). Token ids the pipeline never generates (image, BOS, pad)
    are excluded here too."""
    import torch.nn.functional as F

    from lisa.data.transforms import sam_view

    cfg = model.config
    ids = list(pipeline.builder.build([(QUERY, None)]).input_ids)
    pixels = pipeline.image_processor(images=[image], return_tensors="pt")["pixel_values"]
    generated: list[int] = []
    with torch.no_grad():
        for _ in range(max_new_tokens):
            embeds = model.embed_conversations(torch.tensor([ids + generated]), pixels, torch.tensor([0]))
            logits = model.vlm(inputs_embeds=embeds).logits[0, -1].float()
            logits[pipeline.banned_ids] = float("-inf")
            token = int(logits.argmax())
            if token in pipeline.builder.stop_ids:
                break
            generated.append(token)
        full = torch.tensor([ids + generated])
        embeds = model.embed_conversations(full, pixels, torch.tensor([0]))
        hidden = model.vlm(inputs_embeds=embeds, output_hidden_states=True).hidden_states[-1][0]
        before_seg = torch.nonzero(full[0, 1:] == cfg.seg_token_id).flatten()
        prompts = model.seg_head(hidden[before_seg])
        if prompts.shape[0] == 0:
            return generated, hidden[before_seg], torch.zeros(0, *image.shape[:2])
        view = sam_view(image, cfg.sam_image_size)
        embedding = model.sam.get_image_embeddings(view.pixels[None])
        n = prompts.shape[0]
        low_res, _ = model.sam.mask_decoder(
            image_embeddings=embedding.expand(n, -1, -1, -1),
            image_positional_embeddings=model.sam.get_image_wide_positional_embeddings().expand(n, -1, -1, -1),
            sparse_prompt_embeddings=prompts[:, None, None, :],
            dense_prompt_embeddings=model.sam.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1),
            multimask_output=False,
        )
        size = cfg.sam_image_size
        masks = F.interpolate(low_res[:, 0].float(), (size, size), mode="bilinear", align_corners=False)
        masks = masks[..., : view.resized_size[0], : view.resized_size[1]]
        masks = F.interpolate(masks, image.shape[:2], mode="bilinear", align_corners=False)[:, 0]
    return generated, hidden[before_seg], masks


@pytest.mark.parametrize("height,width", [(48, 40), (30, 70)])
def test_generated_path_matches_the_official_decode(tiny_bin, height, width):
    """Generation through the pipeline (KV cache, [SEG] states kept as they are produced) gives
    the tokens, [SEG] states and masks of the official no-cache decode, on a released-layout
    checkpoint whose lm_head is biased so that it generates some [SEG]s among other tokens."""
    pipeline = LisaPipeline.from_pretrained(tiny_bin.directory, device="cpu", dtype="fp32", vision_tower=tiny_bin.clip_dir)
    model, cfg = pipeline.model, pipeline.model.config
    lm_head = model.vlm.lm_head
    bias = torch.zeros(lm_head.out_features)
    bias[cfg.seg_token_id] = 0.4
    lm_head.bias = torch.nn.Parameter(bias, requires_grad=False)
    image = make_image(3, height, width)
    tokens, seg_hidden, logits = _official_style_generate(model, pipeline, image, 8)
    seg_count = tokens.count(cfg.seg_token_id)
    assert 0 < seg_count < len(tokens), tokens  # a real mix of [SEG] and text
    result = pipeline(image, QUERY, max_new_tokens=8)
    assert result.text == pipeline.builder.decode(tokens)
    assert result.masks.shape == (seg_count, height, width)
    agree = (result.masks == (logits > 0).numpy()).mean()
    assert agree > 0.999, agree
