"""The eager decoder runs a small LM's per-token steps on one CPU thread (the prefill keeps all of
them): the tokens equal those of steps on all threads, the states up to float32 rounding (the BLAS
may split a sum across threads differently: bit-identical on some CPUs, not on others), and
torch's setting is restored."""

from __future__ import annotations

import pytest
import torch

from lisa.model import vlm as vlm_ops
from lisa.model.build import ModelSize, build_model


@pytest.fixture(scope="module")
def lm():
    torch.manual_seed(0)
    model, _, _ = build_model(ModelSize(text_hidden=256, text_intermediate=768))  # lisa-tiny's widths
    return model.vlm, model.config.seg_token_id


@pytest.fixture()
def two_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("rows", [1, 3])
def test_one_thread_steps_equal_all_thread_steps(lm, rows, two_threads, monkeypatch) -> None:
    vlm, seg = lm
    width = vlm.config.text_config.hidden_size
    embeds = torch.randn(rows, 40, width, generator=torch.Generator().manual_seed(rows))
    mask = torch.ones(rows, 40, dtype=torch.long)
    mask[1:, :5] = 0  # left padding in the batched case
    collect, forward = vlm_ops.collect_generation, vlm_ops.language_hidden
    states: list[torch.Tensor] = []
    threads: list[tuple[int, int]] = []  # (tokens fed, torch threads) of each LM call
    monkeypatch.setattr(vlm_ops, "collect_generation", lambda p, s, seg: (states.append(s), collect(p, s, seg))[1])
    monkeypatch.setattr(
        vlm_ops, "language_hidden",
        lambda v, e, *a, **k: (threads.append((e.shape[1], torch.get_num_threads())), forward(v, e, *a, **k))[1],
    )
    one = vlm_ops.greedy_generate(vlm, embeds, mask, 10, [], seg, banned_ids=[])
    monkeypatch.setattr(vlm_ops, "SMALL_STEP_WEIGHTS", 0)  # every LM counts as large: steps on 2 threads
    both = vlm_ops.greedy_generate(vlm, embeds, mask, 10, [], seg, banned_ids=[])
    assert one.tokens == both.tokens and len(one.tokens[0]) == 10
    # A few float32 ulps apart at most (measured 1.5e-6 where they differ), far below any real fault.
    torch.testing.assert_close(states[0], states[1], rtol=1e-5, atol=1e-5)
    calls = len(threads) // 2
    assert threads[:calls] == [(40, 2)] + [(1, 1)] * (calls - 1)  # prefill on all threads, steps on one
    assert threads[calls:] == [(40, 2)] + [(1, 2)] * (calls - 1)
    assert torch.get_num_threads() == 2
