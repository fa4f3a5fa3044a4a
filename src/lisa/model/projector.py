"""The single linear projector of LLaVA-v1 / LISA (HF Llava's own projector is a 2-layer MLP)."""

from __future__ import annotations

import torch
from torch import nn


class LinearProjector(nn.Module):
    """[.., vision_hidden] -> [.., text_hidden] (state-dict key ``linear``)."""

    def __init__(self, vision_hidden: int, text_hidden: int) -> None:
        super().__init__()
        self.linear = nn.Linear(vision_hidden, text_hidden)

    def forward(self, image_features: torch.Tensor) -> torch.Tensor:
        return self.linear(image_features)
