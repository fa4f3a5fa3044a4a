"""A small transformer text encoder: token ids -> one prompt vector for SAM's mask decoder."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class TextEncoderSize:
    vocab_size: int = 1024  # of the byte-level BPE trained on the training texts
    hidden: int = 192
    layers: int = 3
    heads: int = 4
    intermediate: int = 768
    max_length: int = 64  # tokens kept per query (longer queries are truncated)


class TextEncoder(nn.Module):
    """Token and position embeddings, a learned [CLS] vector in front, pre-norm transformer
    layers; the [CLS] output goes through a Linear-ReLU-Linear head (the shape of LISA's seg
    head) to ``prompt_dim``.

    input_ids [B, L] long, attention_mask [B, L] (1 = token, 0 = padding) -> [B, prompt_dim].
    """

    def __init__(self, size: TextEncoderSize, prompt_dim: int) -> None:
        super().__init__()
        self.size = size
        self.tokens = nn.Embedding(size.vocab_size, size.hidden)
        self.positions = nn.Embedding(size.max_length + 1, size.hidden)  # +1: the [CLS] slot
        self.cls = nn.Parameter(torch.randn(1, 1, size.hidden) * 0.02)
        layer = nn.TransformerEncoderLayer(size.hidden, size.heads, size.intermediate, dropout=0.0,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, size.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(size.hidden)
        self.head = nn.Sequential(nn.Linear(size.hidden, size.hidden), nn.ReLU(), nn.Linear(size.hidden, prompt_dim))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        batch, length = input_ids.shape
        hidden = torch.cat([self.cls.expand(batch, -1, -1), self.tokens(input_ids)], dim=1)  # [B, 1+L, D]
        hidden = hidden + self.positions(torch.arange(length + 1, device=input_ids.device))
        keep = torch.cat([attention_mask.new_ones(batch, 1), attention_mask], dim=1).bool()
        hidden = self.layers(hidden, src_key_padding_mask=~keep)
        return self.head(self.norm(hidden[:, 0]))  # [B, prompt_dim]
