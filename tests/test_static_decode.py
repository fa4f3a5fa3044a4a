"""The static-cache decoder (the CUDA default) against the eager loop and the re-run-everything
reference: same tokens, same [SEG] states, single and batched, on the CPU."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from lisa.inference.pipeline import LisaPipeline
from lisa.model.build import ModelSize, build_model
from lisa.model.static_decode import StaticDecoder, decoder_for
from lisa.model.vlm import greedy_generate

LENGTHS = [9, 5, 7]  # left padding of 0, 4 and 2 slots


@pytest.fixture(scope="module")
def tiny():
    """A random tiny model whose lm_head gets a bias, so that tests can make [SEG] likely."""
    torch.manual_seed(0)
    model, tokenizer, _ = build_model(ModelSize())
    vlm = model.vlm
    head = nn.Linear(vlm.lm_head.in_features, vlm.lm_head.out_features, bias=True)
    with torch.no_grad():
        head.weight.copy_(vlm.lm_head.weight)
        head.bias.zero_()
    vlm.lm_head = head
    return vlm, model.config.seg_token_id, tokenizer.eos_token_id


@pytest.fixture(scope="module")
def prompts(tiny):
    vlm = tiny[0]
    generator = torch.Generator().manual_seed(1)
    width, longest = vlm.config.text_config.hidden_size, max(LENGTHS)
    embeds = torch.randn(len(LENGTHS), longest, width, generator=generator)
    mask = torch.zeros(len(LENGTHS), longest, dtype=torch.long)
    for row, length in enumerate(LENGTHS):
        mask[row, longest - length:] = 1
    return embeds, mask


def _seg_bias(vlm, seg_id: int, value: float) -> None:
    with torch.no_grad():
        vlm.lm_head.bias.zero_()
        vlm.lm_head.bias[seg_id] = value


def _assert_same(static, eager) -> None:
    assert static.tokens == eager.tokens
    assert [h.shape for h in static.seg_hidden] == [h.shape for h in eager.seg_hidden]
    for a, b in zip(static.seg_hidden, eager.seg_hidden):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("seg_bias", [0.0, 0.3], ids=["text-only", "with-seg"])
def test_batched_left_padded_equals_eager_and_rerun_reference(tiny, prompts, seg_bias) -> None:
    vlm, seg_id, eos = tiny
    _seg_bias(vlm, seg_id, seg_bias)
    embeds, mask = prompts
    args = dict(max_new_tokens=12, stop_ids=[eos], seg_id=seg_id, banned_ids=[0, 1])
    eager = greedy_generate(vlm, embeds, mask, **args)
    rerun = greedy_generate(vlm, embeds, mask, use_cache=False, **args)
    static = StaticDecoder(vlm).generate(embeds, mask, 12, [eos], seg_id, [0, 1])
    seg_count = sum(row.count(seg_id) for row in eager.tokens)
    assert (seg_count > 0) == (seg_bias > 0)  # the bias really switches [SEG] on
    assert seg_count < sum(len(row) for row in eager.tokens)  # not every pick is [SEG]
    _assert_same(static, eager)
    _assert_same(static, rerun)


def test_single_rows_equal_their_batched_rows(tiny, prompts) -> None:
    vlm, seg_id, eos = tiny
    _seg_bias(vlm, seg_id, 0.3)
    embeds, mask = prompts
    decoder = StaticDecoder(vlm)
    batched = decoder.generate(embeds, mask, 10, [eos], seg_id, [])
    longest = max(LENGTHS)
    for row, length in enumerate(LENGTHS):
        one = embeds[row : row + 1, longest - length:]
        single = decoder.generate(one, torch.ones(1, length, dtype=torch.long), 10, [eos], seg_id, [])
        eager = greedy_generate(vlm, one, torch.ones(1, length, dtype=torch.long), 10, [eos], seg_id, [])
        _assert_same(single, eager)
        assert single.tokens[0] == batched.tokens[row]
        torch.testing.assert_close(single.seg_hidden[0], batched.seg_hidden[row], atol=1e-5, rtol=1e-4)


def test_a_row_that_stops_mid_batch_leaves_the_others_running(tiny, prompts) -> None:
    vlm, seg_id, eos = tiny
    _seg_bias(vlm, seg_id, 0.3)
    embeds, mask = prompts
    free = greedy_generate(vlm, embeds, mask, 12, [eos], seg_id, []).tokens
    # Stop on a token one row picks early and another row never picks: a stop mid-batch.
    stop = next(t for t in free[0][2:6] if t != seg_id and any(t not in row for row in free[1:]))
    stops = [eos, stop]
    eager = greedy_generate(vlm, embeds, mask, 12, stops, seg_id, [])
    lengths = [len(row) for row in eager.tokens]
    assert min(lengths) < 12 and max(lengths) == 12
    for check_every in (1, 3, 50):
        static = StaticDecoder(vlm, check_every=check_every).generate(embeds, mask, 12, stops, seg_id, [])
        _assert_same(static, eager)
        assert all(stop not in row for row in static.tokens)


def test_every_row_stopping_ends_generation_early(tiny, prompts) -> None:
    vlm, seg_id, eos = tiny
    _seg_bias(vlm, seg_id, 0.0)
    embeds, mask = prompts
    first = greedy_generate(vlm, embeds, mask, 1, [eos], seg_id, []).tokens
    stops = sorted({row[0] for row in first})  # every row stops on its first pick
    decoder = StaticDecoder(vlm)
    result = decoder.generate(embeds, mask, 40, stops, seg_id, [])
    assert result.tokens == [[], [], []]
    (buffers, _), = decoder._shapes.values()
    assert int(buffers.step) == 1  # no decode step ran after the first pick


@pytest.mark.parametrize("max_new_tokens", [1, 2, 5])
def test_max_new_tokens_is_reached_exactly(tiny, prompts, max_new_tokens) -> None:
    vlm, seg_id, eos = tiny
    _seg_bias(vlm, seg_id, 0.3)
    embeds, mask = prompts
    static = StaticDecoder(vlm).generate(embeds, mask, max_new_tokens, [eos], seg_id, [])
    eager = greedy_generate(vlm, embeds, mask, max_new_tokens, [eos], seg_id, [])
    _assert_same(static, eager)
    assert max(len(row) for row in static.tokens) == max_new_tokens


def test_reused_buffers_carry_nothing_from_the_previous_call(tiny, prompts) -> None:
    vlm, seg_id, eos = tiny
    _seg_bias(vlm, seg_id, 0.3)
    embeds, mask = prompts
    decoder = StaticDecoder(vlm)
    decoder.generate(embeds.flip(0), mask, 12, [eos], seg_id, [])  # same shape, other prompts: same buffers
    other = torch.randn(embeds.shape, generator=torch.Generator().manual_seed(7))
    for inputs in (embeds, other):
        _assert_same(decoder.generate(inputs, mask, 12, [eos], seg_id, []), greedy_generate(vlm, inputs, mask, 12, [eos], seg_id, []))
    assert len(decoder._shapes) == 1


def test_bf16_static_matches_bf16_eager(tiny, prompts) -> None:
    vlm, seg_id, eos = tiny
    _seg_bias(vlm, seg_id, 0.3)
    embeds, mask = prompts
    half = vlm.to(torch.bfloat16)
    try:
        eager = greedy_generate(half, embeds.bfloat16(), mask, 8, [eos], seg_id, [])
        static = StaticDecoder(half).generate(embeds.bfloat16(), mask, 8, [eos], seg_id, [])
        assert static.tokens == eager.tokens
        for a, b in zip(static.seg_hidden, eager.seg_hidden):
            assert a.dtype == torch.bfloat16
            torch.testing.assert_close(a, b, atol=3e-2, rtol=3e-2)
    finally:
        vlm.float()


def test_the_cpu_keeps_the_eager_decoder_and_graphs_need_cuda(tiny) -> None:
    vlm, seg_id, eos = tiny
    assert decoder_for(vlm) is None
    with pytest.raises(ValueError, match="CUDA"):
        StaticDecoder(vlm, use_graphs=True)


def test_pipeline_with_the_static_decoder_gives_the_same_answers_and_masks(tiny_pipeline) -> None:
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, (48, 40, 3), dtype=np.uint8) for _ in range(3)]
    queries = ["a", "segment the thing on the left", "what is it"]
    static_pipe = LisaPipeline(tiny_pipeline.model, tiny_pipeline.tokenizer, tiny_pipeline.image_processor)
    static_pipe.decoder = StaticDecoder(static_pipe.model.vlm)
    for max_new_tokens in (16, 3):
        eager = [r.text for r in tiny_pipeline(images, queries, max_new_tokens=max_new_tokens)]
        assert [r.text for r in static_pipe(images, queries, max_new_tokens=max_new_tokens)] == eager
    assert [static_pipe(i, q).text for i, q in zip(images, queries)] == [tiny_pipeline(i, q).text for i, q in zip(images, queries)]


def test_shipped_model_answers_identically_with_the_static_decoder() -> None:
    eager = LisaPipeline.from_pretrained("lisa-tiny", device="cpu", dtype="float32")
    static = LisaPipeline(eager.model, eager.tokenizer, eager.image_processor)
    static.decoder = StaticDecoder(eager.model.vlm)
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (200 + 20 * i, 256, 3), dtype=np.uint8) for i in range(3)]
    queries = ["What is the red object?", "Segment the largest shape.", "Which thing keeps you dry in the rain?"]
    eager_results, static_results = eager(images, queries), static(images, queries)
    assert any("[SEG]" in r.text for r in eager_results)
    for a, b in zip(static_results, eager_results):
        assert a.text == b.text
        assert a.masks.shape == b.masks.shape
        assert (a.masks != b.masks).sum() <= 0.001 * a.masks.size  # pixels at logit ~0 may flip
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("LISA_TEST_COMPILE"), reason="set LISA_TEST_COMPILE=1 (about 2 min on 2 cores)")
def test_compiled_step_equals_eager(tiny, prompts) -> None:
    """torch.compile of the decode step (inductor, C++ on the CPU), as on a GPU before capture."""
    vlm, seg_id, eos = tiny
    _seg_bias(vlm, seg_id, 0.3)
    embeds, mask = prompts
    static = StaticDecoder(vlm, compile_step=True).generate(embeds, mask, 8, [eos], seg_id, [])
    _assert_same(static, greedy_generate(vlm, embeds, mask, 8, [eos], seg_id, []))


def test_banned_ids_are_never_picked(tiny, prompts) -> None:
    vlm, seg_id, eos = tiny
    _seg_bias(vlm, seg_id, 0.0)
    embeds, mask = prompts
    free = greedy_generate(vlm, embeds, mask, 6, [eos], seg_id, []).tokens
    banned = sorted({row[0] for row in free})  # each row's favourite first token
    eager = greedy_generate(vlm, embeds, mask, 6, [eos], seg_id, banned)
    static = StaticDecoder(vlm).generate(embeds, mask, 6, [eos], seg_id, banned)
    _assert_same(static, eager)
    assert all(token not in banned for row in static.tokens for token in row)
