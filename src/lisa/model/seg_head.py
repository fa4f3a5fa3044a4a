"""The projection from an LLM hidden state to a SAM sparse prompt embedding."""

from __future__ import annotations

import torch
from torch import nn


class SegHead(nn.Module):
    """Linear(d, d) -> ReLU -> Linear(d, out_dim), as in LISA's ``text_hidden_fcs``.

    Input ``[N, d]`` hidden states, output ``[N, out_dim]`` prompt embeddings.
    """

    def __init__(self, hidden_size: int, out_dim: int = 256) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden_size, hidden_size)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden_size, out_dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(hidden)))
