"""Whether what a [SEG] asks for is in the image at all: the presence head (not in the paper).

LISA always decodes a mask for a [SEG], so a model that answers "[SEG]" for an object the image
does not hold returns some other object's mask, or a fragment. gRefCOCO's no-target queries score
that as a miss. The presence head reads what the mask path already computed for each [SEG] and
gives the log-odds that the queried object is there; a mask whose log-odds fall below the
head's ``threshold`` is returned empty (declined). It is fitted after the model is trained, on
present and absent queries, with everything else frozen, so the masks it keeps are bit-for-bit
the model's own (``configs/tiny-shapes/fit_presence_head.py``).

What it reads of each [SEG] (``presence_features``): the seg head's normalised state (what was
asked), the image tokens its read weighted (what it found) and the one it weighted most, the
read's strongest match and the logsumexp of its matches (how well anything matched), the read's
peak weight, and the decoded mask's score, decoder IoU estimate and area share. A small MLP of
those can compare the colour and kind asked for with the ones found, which no single signal
does (lisa-tiny experiments, sections 20-21).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from lisa.model.seg_head import SegHead

SCALAR_FEATURES = 7  # match max, match logsumexp, peak weight, mask score, IoU estimate, area share, 1 / tokens


def presence_feature_size(hidden_size: int, token_size: int) -> int:
    return hidden_size + 2 * token_size + SCALAR_FEATURES


def presence_features(state: torch.Tensor, scores: torch.Tensor, tokens: torch.Tensor, mask_scores: torch.Tensor,
                      iou_estimates: torch.Tensor, area_shares: torch.Tensor) -> torch.Tensor:
    """The presence head's input [N, F] for N [SEG]s.

    state [N, d]: the seg head's normalised [SEG] states; scores [N, T]: its read's logits over
    each state's image tokens [N, T, D]; mask_scores, iou_estimates, area_shares [N]: of the
    decoded masks (mean foreground probability, the decoder's IoU estimate, mask area over image
    area)."""
    weights = scores.softmax(-1)
    pooled = torch.einsum("nt,ntd->nd", weights, tokens)
    strongest = tokens[torch.arange(tokens.shape[0], device=tokens.device), weights.argmax(-1)]
    scalars = torch.stack([
        scores.max(-1).values, scores.logsumexp(-1), weights.max(-1).values, mask_scores, iou_estimates,
        area_shares, torch.full_like(mask_scores, 1.0 / tokens.shape[1]),
    ], dim=-1)
    return torch.cat([state, pooled, strongest, scalars.to(state.dtype)], dim=-1)


class PresenceHead(nn.Module):
    """features [N, F] -> log-odds [N] that the queried object is in the image.

    Standardises each feature with the statistics of the set it was fitted on (buffers, saved
    with it), then Linear -> ReLU -> Linear. ``threshold``: the log-odds below which a mask is
    declined, chosen when fitting (a buffer too, so a saved model declines as it was measured)."""

    def __init__(self, feature_size: int, width: int = 64) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(feature_size))
        self.register_buffer("std", torch.ones(feature_size))
        self.register_buffer("threshold", torch.tensor(0.0))
        self.net = nn.Sequential(nn.Linear(feature_size, width), nn.ReLU(), nn.Linear(width, 1))

    @classmethod
    def reading(cls, seg_head: SegHead, hidden_size: int, width: int) -> PresenceHead:
        """A head sized for what ``seg_head`` (with a read of the image tokens) computes."""
        assert seg_head.image_attention is not None, "a presence head needs a seg head that reads the image tokens"
        return cls(presence_feature_size(hidden_size, int(seg_head.image_attention.key.in_features)), width)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        standard = (features.to(self.mean.dtype) - self.mean) / self.std
        return self.net(standard).squeeze(-1)

    def keeps(self, log_odds: torch.Tensor) -> torch.Tensor:
        """[N] bool: which of the head's log-odds [N] keep their masks (the one place the threshold
        is applied)."""
        return log_odds >= self.threshold
