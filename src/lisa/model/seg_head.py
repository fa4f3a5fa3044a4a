"""The projection from an LLM hidden state to a SAM sparse prompt embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lisa.errors import LisaError

SEG_HEAD_NORMS = ("none", "batch")


class SegHead(nn.Module):
    """Linear(d, d) -> ReLU -> Linear(d, out_dim), as in LISA's ``text_hidden_fcs``.

    Input ``[N, d]`` hidden states, output ``[N, out_dim]`` prompt embeddings.

    ``norm="batch"`` (not in the paper; off for released weights) first standardises each feature
    of the hidden state (BatchNorm, running statistics at inference). A small LLM trained from
    scratch gives states that predict [SEG] with cosine 0.97-1.0 between different queries,
    although the query can be read from them; without standardising, the mask decoder sees
    nearly one prompt whatever the query.
    """

    def __init__(self, hidden_size: int, out_dim: int = 256, norm: str = "none") -> None:
        super().__init__()
        if norm not in SEG_HEAD_NORMS:
            raise LisaError(f"unknown seg_head_norm {norm!r}; supported: {', '.join(SEG_HEAD_NORMS)}")
        self.norm = nn.BatchNorm1d(hidden_size) if norm == "batch" else None
        self.fc1 = nn.Linear(hidden_size, hidden_size)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden_size, out_dim)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            norm = self.norm
            # Batch statistics need two states or more; a lone [SEG] uses the running ones.
            batch_stats = self.training and hidden.shape[0] > 1
            hidden = F.batch_norm(hidden, norm.running_mean, norm.running_var, norm.weight, norm.bias,
                                  training=batch_stats, momentum=norm.momentum, eps=norm.eps)
            if batch_stats:
                norm.num_batches_tracked.add_(1)
        return self.fc2(self.act(self.fc1(hidden)))
