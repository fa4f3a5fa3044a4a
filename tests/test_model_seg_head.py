"""The seg head's optional input standardisation (``seg_head_norm: batch``)."""

from __future__ import annotations

import pytest
import torch

from lisa.errors import LisaError
from lisa.model.seg_head import SegHead


def test_batch_norm_exposes_small_differences_between_states() -> None:
    torch.manual_seed(0)
    common = torch.randn(1, 16) * 10
    states = common + 0.01 * torch.randn(6, 16)  # "same query" to the eye: cosine ~ 1
    plain, normed = SegHead(16, 8), SegHead(16, 8, norm="batch")
    normed.load_state_dict(plain.state_dict(), strict=False)
    cosine = lambda x: torch.nn.functional.cosine_similarity(x[0], x[1], dim=0)  # noqa: E731
    assert cosine(plain(states)) > 0.99
    assert cosine(normed(states)) < 0.9


def test_training_updates_running_statistics_and_inference_uses_them() -> None:
    head = SegHead(4, 3, norm="batch")
    head.train()
    head(torch.randn(8, 4) + 5.0)
    assert head.norm.running_mean.mean() > 0.3 and int(head.norm.num_batches_tracked) == 1
    head(torch.randn(1, 4))  # a lone [SEG] in a training batch: running statistics, no error, no update
    assert int(head.norm.num_batches_tracked) == 1
    head.eval()
    batch = torch.randn(5, 4)
    together = head(batch)
    alone = torch.cat([head(row[None]) for row in batch])
    torch.testing.assert_close(together, alone)  # batched = one by one at inference


def test_default_head_keeps_the_official_layout() -> None:
    assert set(SegHead(8, 4).state_dict()) == {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    with pytest.raises(LisaError, match="supported"):
        SegHead(8, 4, norm="layer")
