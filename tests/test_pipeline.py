"""LisaPipeline: batching, KV cache, the image-embedding cache, save/load, odd inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lisa.errors import LisaError
from lisa.inference.pipeline import LisaPipeline
from lisa.model import vlm as vlm_ops
from lisa.model.lisa import LisaModel


@pytest.fixture()
def images(rng):
    return [rng.integers(0, 255, (40, 56, 3), dtype=np.uint8), rng.integers(0, 255, (64, 30, 3), dtype=np.uint8)]


def test_batched_equals_single_teacher_forced(tiny_pipeline, images) -> None:
    queries = ["find the red circle please", "star"]
    answers = ["Sure, [SEG].", "[SEG] and [SEG]."]
    singles = [tiny_pipeline(i, q, answers=a) for i, q, a in zip(images, queries, answers)]
    batched = tiny_pipeline(images, queries, answers=answers)
    for one, many in zip(singles, batched):
        assert one.masks.shape == many.masks.shape
        assert (one.masks == many.masks).mean() > 0.999
        np.testing.assert_allclose(one.scores, many.scores, atol=1e-4)


def test_batched_equals_single_generation(tiny_pipeline, images) -> None:
    queries = ["a", "what is the long query here"]
    singles = [tiny_pipeline(i, q, max_new_tokens=12) for i, q in zip(images, queries)]
    batched = tiny_pipeline(images, queries, max_new_tokens=12)
    assert [s.text for s in singles] == [b.text for b in batched]


def _embeds(pipe, image, query):
    prompt = pipe.builder.build([(query, None)])
    pipe(image, query, answers="x")  # fills the image cache
    entry = next(reversed(pipe._cache.values()))
    ids = torch.tensor([prompt.input_ids])
    embeds = vlm_ops.embed_with_images(pipe.model.vlm, ids, entry.features[None], torch.tensor([0]), pipe.model.config.image_token_id)
    return embeds, torch.ones_like(ids)


class _SegBias:
    """Give lm_head a bias towards [SEG] so that the random model generates some."""

    def __init__(self, pipe, value: float) -> None:
        self.lm_head, self.seg, self.value = pipe.model.vlm.lm_head, pipe.model.config.seg_token_id, value

    def __enter__(self):
        self.original = self.lm_head.bias
        bias = torch.zeros(self.lm_head.out_features)
        bias[self.seg] = self.value
        self.lm_head.bias = torch.nn.Parameter(bias, requires_grad=False)

    def __exit__(self, *exc) -> None:
        self.lm_head.bias = self.original


def test_cached_generation_equals_uncached(tiny_pipeline, images) -> None:
    pipe = tiny_pipeline
    embeds, mask = _embeds(pipe, images[0], "segment the thing")
    config = pipe.model.config
    kwargs = dict(max_new_tokens=16, stop_ids=pipe.builder.stop_ids, seg_id=config.seg_token_id, banned_ids=pipe.banned_ids)
    with _SegBias(pipe, 0.5):  # [SEG] on some steps, other tokens on the rest
        cached = vlm_ops.greedy_generate(pipe.model.vlm, embeds, mask, use_cache=True, **kwargs)
        uncached = vlm_ops.greedy_generate(pipe.model.vlm, embeds, mask, use_cache=False, **kwargs)
    seg_count = cached.tokens[0].count(config.seg_token_id)
    assert 0 < seg_count < len(cached.tokens[0])  # a real mix, not an empty comparison
    assert cached.tokens == uncached.tokens
    assert cached.seg_hidden[0].shape[0] == seg_count
    for a, b in zip(cached.seg_hidden, uncached.seg_hidden):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_banned_tokens_are_never_generated(tiny_pipeline, images) -> None:
    """The image placeholder, BOS and pad must not be generated even when they score highest."""
    pipe = tiny_pipeline
    embeds, mask = _embeds(pipe, images[0], "segment the thing")
    lm_head = pipe.model.vlm.lm_head
    original = lm_head.bias
    bias = torch.zeros(lm_head.out_features)
    bias[pipe.banned_ids] = 100.0
    lm_head.bias = torch.nn.Parameter(bias, requires_grad=False)
    try:
        generation = vlm_ops.greedy_generate(
            pipe.model.vlm, embeds, mask, max_new_tokens=6, stop_ids=pipe.builder.stop_ids,
            seg_id=pipe.model.config.seg_token_id, banned_ids=pipe.banned_ids,
        )
    finally:
        lm_head.bias = original
    assert pipe.model.config.image_token_id in pipe.banned_ids and pipe.tokenizer.bos_token_id in pipe.banned_ids
    assert generation.tokens[0] and not set(generation.tokens[0]) & set(pipe.banned_ids)


def test_seg_hidden_collected_during_generation_matches_teacher_forcing(tiny_pipeline, images) -> None:
    """Generate with the seg token forced on, then re-run teacher-forced on the generated text:
    the collected hidden states must equal those of the full forward."""
    pipe = tiny_pipeline
    config = pipe.model.config
    embeds, mask = _embeds(pipe, images[0], "find it")
    lm_head = pipe.model.vlm.lm_head
    original = lm_head.bias
    with torch.no_grad():
        lm_head.bias = torch.nn.Parameter(torch.zeros(lm_head.out_features))
        lm_head.bias[config.seg_token_id] = 50.0  # always predict [SEG]
    try:
        generation = vlm_ops.greedy_generate(
            pipe.model.vlm, embeds, mask, max_new_tokens=3, stop_ids=pipe.builder.stop_ids,
            seg_id=config.seg_token_id, banned_ids=[],
        )
    finally:
        lm_head.bias = original
    assert generation.tokens[0] == [config.seg_token_id] * 3
    prompt = pipe.builder.build([("find it", None)]).input_ids + generation.tokens[0]
    ids = torch.tensor([prompt])
    entry = next(reversed(pipe._cache.values()))
    full = vlm_ops.embed_with_images(pipe.model.vlm, ids, entry.features[None], torch.tensor([0]), config.image_token_id)
    hidden = vlm_ops.language_hidden(pipe.model.vlm, full, torch.ones_like(ids))
    rows, cols = pipe.model.seg_positions(ids)
    torch.testing.assert_close(generation.seg_hidden[0], hidden[rows, cols], atol=1e-5, rtol=1e-4)


def test_image_embedding_computed_once_per_image(tiny_pipeline, images) -> None:
    pipe = tiny_pipeline
    pipe.clear_cache()
    calls = []
    original = pipe.model.sam.get_image_embeddings

    def counting(pixels, **kwargs):
        calls.append(pixels.shape[0])
        return original(pixels, **kwargs)

    pipe.model.sam.get_image_embeddings = counting
    try:
        pipe(images[0], "first", answers="[SEG].")
        pipe(images[0], "second", history=[("first", "[SEG].")], answers="[SEG].")
        pipe([images[0], images[1], images[1]], ["a", "b", "c"], answers="[SEG].")
    finally:
        pipe.model.sam.get_image_embeddings = original
    assert calls == [1, 1]  # image 0 once, image 1 once (deduplicated within the batch)


def test_one_image_many_queries_is_broadcast(tiny_pipeline, images) -> None:
    results = tiny_pipeline(images[0], ["a", "b", "c"], answers="[SEG].")
    assert len(results) == 3 and all(r.masks.shape == (1, 40, 56) for r in results)


def test_save_load_round_trip_is_bit_exact(tiny_pipeline, tmp_path, images) -> None:
    model = tiny_pipeline.model
    model.save_pretrained(tmp_path)
    loaded = LisaModel.from_pretrained(tmp_path)
    original_state, loaded_state = model.state_dict(), loaded.state_dict()
    assert original_state.keys() == loaded_state.keys()
    for key in original_state:
        assert torch.equal(original_state[key], loaded_state[key]), key
    again = LisaPipeline(loaded, tiny_pipeline.tokenizer, tiny_pipeline.image_processor)
    a = tiny_pipeline(images[0], "q", answers="[SEG].")
    b = again(images[0], "q", answers="[SEG].")
    assert np.array_equal(a.masks, b.masks) and np.array_equal(a.scores, b.scores)


def test_wrong_checkpoint_is_refused(tiny_pipeline, tmp_path) -> None:
    from safetensors.torch import load_file, save_file

    tiny_pipeline.model.save_pretrained(tmp_path)
    state = load_file(str(tmp_path / "model.safetensors"))
    state.pop("seg_head.fc2.bias")
    state["extra.weight"] = torch.zeros(1)
    save_file(state, str(tmp_path / "model.safetensors"))
    with pytest.raises(LisaError, match="missing 1 keys.*seg_head.fc2.bias.*unexpected 1 keys.*extra.weight"):
        LisaModel.from_pretrained(tmp_path)


def test_missing_model_dir_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(LisaError, match="not found"):
        LisaPipeline.from_pretrained(tmp_path / "nope", device="cpu")
    with pytest.raises(LisaError, match="lisa_config.json is missing"):
        LisaPipeline.from_pretrained(tmp_path, device="cpu")


def test_text_only_answer_gives_no_masks(tiny_pipeline, images) -> None:
    result = tiny_pipeline(images[1], "how many?", answers="Two.")
    assert result.text == "Two." and result.masks.shape == (0, 64, 30) and result.masks.dtype == bool


def test_mismatched_batch_is_a_clear_error(tiny_pipeline, images) -> None:
    with pytest.raises(LisaError, match="2 images but 3 queries"):
        tiny_pipeline(images, ["a", "b", "c"])


def test_timings_are_reported(tiny_pipeline, images) -> None:
    result = tiny_pipeline(images[0], "q", max_new_tokens=4)
    assert {"preprocess_ms", "image_encode_ms", "generate_ms", "mask_decode_ms", "total_ms"} <= result.timings.keys()


def test_quantized_loading_is_refused_on_cpu_with_a_clear_message(tiny_model_dir) -> None:
    with pytest.raises(LisaError, match="8-bit loading needs a CUDA GPU"):
        LisaPipeline.from_pretrained(tiny_model_dir, device="cpu", quantize=8)
    with pytest.raises(LisaError, match="3 bits is not supported"):
        LisaPipeline.from_pretrained(tiny_model_dir, device="cpu", quantize=3)


def test_segment_command_refuses_quantization_on_cpu(tiny_model_dir, tmp_path, capsys) -> None:
    from PIL import Image

    from lisa.cli import main

    Image.new("RGB", (20, 20)).save(tmp_path / "x.png")
    code = main(["segment", str(tmp_path / "x.png"), "q", "--model", str(tiny_model_dir), "--device", "cpu", "--quantize", "4",
                 "--out", str(tmp_path / "out")])  # not the checkout's out/, which `make demo` fills
    assert code == 2 and "4-bit loading needs a CUDA GPU" in capsys.readouterr().err


def test_pipeline_formats_what_the_model_computes(tiny_pipeline, images) -> None:
    """The pipeline only formats: its masks and scores are the model's own segmentation path's
    (logits > 0, the model's scores), for a batch over two images with 1 and 2 [SEG]s."""
    from lisa.data.transforms import sam_view, vlm_view
    from lisa.inference.pipeline import _pad_left

    pipe = tiny_pipeline
    model = pipe.model
    answers = ["Sure, [SEG].", "[SEG] and [SEG]."]
    results = pipe(images, ["first", "second"], answers=answers, raw=True)
    views = [sam_view(i, model.config.sam_image_size) for i in images]
    encoded = model.encode_images(
        vlm_view(images, pipe.image_processor), torch.stack([v.pixels for v in views]),
        [v.resized_size for v in views], [v.original_size for v in views],
    )
    prompts = [pipe.builder.build([(q, a)]).input_ids for q, a in zip(["first", "second"], answers)]
    ids, attention = _pad_left(prompts, pipe.pad_id, model.device)
    segmentation = model.teacher_forced_segmentation(ids, attention, encoded, torch.tensor([0, 1]))
    assert [h.shape[0] for h in segmentation.seg_hidden] == [1, 2]
    for result, logits, scores in zip(results, segmentation.mask_logits, segmentation.scores):
        assert np.array_equal(result.masks, (logits > 0).numpy())
        assert np.array_equal(result.scores, scores.numpy())


def test_same_pixels_in_another_shape_are_another_image(tiny_pipeline) -> None:
    """The image cache keys on shape too: a 2x8 and a 4x4 image with the same bytes must not
    share an encoding (the mask would come back at the wrong size)."""
    flat = np.arange(2 * 8 * 3, dtype=np.uint8)
    wide, square = flat.reshape(2, 8, 3), flat.reshape(4, 4, 3)
    assert wide.tobytes() == square.tobytes()
    tiny_pipeline.clear_cache()
    first = tiny_pipeline(wide, "q", answers="[SEG].", raw=True)
    second = tiny_pipeline(square, "q", answers="[SEG].", raw=True)
    assert first.masks.shape == (1, 2, 8) and second.masks.shape == (1, 4, 4)


def test_a_batch_larger_than_the_cache_keeps_all_its_images(tiny_pipeline, images, rng) -> None:
    pipe = LisaPipeline(tiny_pipeline.model, tiny_pipeline.tokenizer, tiny_pipeline.image_processor, cache_size=1)
    third = rng.integers(0, 255, (20, 33, 3), dtype=np.uint8)
    results = pipe([images[0], images[1], third], ["a", "b", "c"], answers="[SEG].", raw=True)
    assert [r.masks.shape for r in results] == [(1, 40, 56), (1, 64, 30), (1, 20, 33)]
    assert len(pipe._cache) == 3  # trimmed back to cache_size when the next image is encoded
    pipe(rng.integers(0, 255, (9, 9, 3), dtype=np.uint8), "a", answers="[SEG].", raw=True)
    assert len(pipe._cache) == 1


def test_a_batch_that_repeats_an_older_cached_image_keeps_it(tiny_pipeline, images, rng) -> None:
    """An image cached by an earlier call is the oldest entry; encoding the batch's new images
    must not evict it before the batch reads it (it did: a KeyError on the second call)."""
    pipe = LisaPipeline(tiny_pipeline.model, tiny_pipeline.tokenizer, tiny_pipeline.image_processor, cache_size=2)
    new = [rng.integers(0, 255, (20, 20 + i, 3), dtype=np.uint8) for i in range(2)]
    pipe([images[0], images[1]], ["a", "b"], answers="[SEG].", raw=True)
    results = pipe([new[0], images[0], new[1]], ["a", "b", "c"], answers="[SEG].", raw=True)
    assert [r.masks.shape for r in results] == [(1, 20, 20), (1, 40, 56), (1, 20, 21)]
    alone = pipe(images[0], "b", answers="[SEG].", raw=True)
    assert np.array_equal(results[1].scores, alone.scores)
