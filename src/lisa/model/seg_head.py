"""The projection from an LLM hidden state to a SAM sparse prompt embedding."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from lisa.errors import LisaError
from lisa.model.losses import attention_grid

SEG_HEAD_NORMS = ("none", "batch")
# What the seg head's image read attends over: the VLM's image tokens (the LM's width, the VLM's
# grid), or the mask backbone's image embedding (its own width and grid, e.g. SAM's 32x32 for
# lisa-tiny, 64x64 for SAM ViT-H).
SEG_HEAD_READS = ("image_tokens", "mask_embedding")


class SegProjection(NamedTuple):
    """What the seg head makes of the [SEG] states: the sparse prompts [N, out_dim], its image
    read's attention [N, T] (None: no read) and its second read's over the mask embedding
    [N, h * w] (None: no second read)."""

    prompts: torch.Tensor
    attention: torch.Tensor | None = None
    embedding_attention: torch.Tensor | None = None


class ImageAttention(nn.Module):
    """One attention read of the image tokens the LM saw, queried by the [SEG] state: the
    softmax over the tokens of q(state) . k(token), then a small MLP of the weighted tokens.

    Not in the paper (off for released weights). A from-scratch LM whose image tokens carry each
    cell's colour and place still cannot say where an object is (lisa-tiny: its "Where is ...?"
    answers are no better than a constant guess), so its [SEG] state cannot either; this read
    lets the state pick the tokens that match the query and pass on where they are.
    """

    def __init__(self, hidden_size: int, token_size: int, out_dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(token_size, hidden_size)
        self.value = nn.Sequential(nn.Linear(token_size, hidden_size), nn.ReLU(), nn.Linear(hidden_size, out_dim))

    def weights(self, state: torch.Tensor, tokens: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """state [N, d], tokens [N, T, D] (each state's image) -> attention [N, T] (rows sum to 1).
        valid [N, T] bool: the tokens that may be read (None: all), e.g. not SAM's padding."""
        return self.scores(state, tokens, valid).softmax(-1)

    def scores(self, state: torch.Tensor, tokens: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """The attention's logits [N, T]: scaled q(state) . k(token), -inf where not ``valid``."""
        scores = torch.einsum("nd,ntd->nt", self.query(state), self.key(tokens)) / self.query.out_features**0.5
        if valid is not None:
            scores = scores.masked_fill(~valid, float("-inf"))
        return scores

    def forward(self, state: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """state [N, d], tokens [N, T, D] (each state's image) -> [N, out_dim]."""
        return self.read(self.weights(state, tokens), tokens)

    def read(self, weights: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        return torch.einsum("nt,nto->no", weights, self.value(tokens))

    def silence(self) -> ImageAttention:
        """Zero the output layer: a read added to a trained head adds nothing to its prompts until
        it trains (its attention, hence a dense prompt's map, is there from the start)."""
        nn.init.zeros_(self.value[-1].weight)
        nn.init.zeros_(self.value[-1].bias)
        return self


class SegHead(nn.Module):
    """Linear(d, d) -> ReLU -> Linear(d, out_dim), as in LISA's ``text_hidden_fcs``.

    Input ``[N, d]`` hidden states, output ``[N, out_dim]`` prompt embeddings.

    ``norm="batch"`` (not in the paper; off for released weights) first standardises each feature
    of the hidden state (BatchNorm, running statistics at inference). A small LLM trained from
    scratch gives states that predict [SEG] with cosine 0.97-1.0 between different queries,
    although the query can be read from them; without standardising, the mask decoder sees
    nearly one prompt whatever the query.

    ``image_attention=True`` (not in the paper; off for released weights) adds an
    ``ImageAttention`` read of the [SEG]'s image tokens to the output; ``forward`` then needs them.
    ``read="mask_embedding"`` makes that read attend over the mask backbone's image embedding
    ([C, h, w] as h * w tokens of width ``out_dim``) instead: a finer grid, and features the mask
    decoder already uses (lisa-tiny: the VLM's 8x8 tokens against SAM's 32x32 embedding).

    ``dense_prompt=True`` (needs ``image_attention``; not in the paper) also hands the read's
    attention to the mask decoder as a dense prompt (``dense_prompts``): where the read looks, the
    image embedding gains a learned vector. The sparse prompt carries *what*, this map *where*.

    ``embedding_read=True`` (needs a dense prompt from a read of the image tokens; not in the
    paper) adds a second read over the mask embedding (``embedding_attention``), whose output
    adds to the sparse prompt too and whose map is a second dense prompt with its own vector
    (``embedding_dense_prompt``): the decoder gets both the VLM's coarse map and SAM's sharp one
    and learns how much of each to use.
    """

    def __init__(self, hidden_size: int, out_dim: int = 256, norm: str = "none", image_attention: bool = False,
                 dense_prompt: bool = False, read: str = "image_tokens", embedding_read: bool = False) -> None:
        super().__init__()
        if norm not in SEG_HEAD_NORMS:
            raise LisaError(f"unknown seg_head_norm {norm!r}; supported: {', '.join(SEG_HEAD_NORMS)}")
        if read not in SEG_HEAD_READS:
            raise LisaError(f"unknown seg_head_read {read!r}; supported: {', '.join(SEG_HEAD_READS)}")
        self.read = read
        self.norm = nn.BatchNorm1d(hidden_size) if norm == "batch" else None
        self.fc1 = nn.Linear(hidden_size, hidden_size)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden_size, out_dim)
        # The VLM's projected image tokens have the LM's width; a mask embedding has the prompts'.
        token_size = hidden_size if read == "image_tokens" else out_dim
        self.image_attention = ImageAttention(hidden_size, token_size, out_dim) if image_attention else None
        self.dense_prompt: nn.Parameter | None = None
        if dense_prompt:
            self.enable_dense_prompt()
        self.embedding_attention: ImageAttention | None = None
        self.embedding_dense_prompt: nn.Parameter | None = None
        if embedding_read:
            self.enable_embedding_read()

    @property
    def reads_mask_embedding(self) -> bool:
        """Whether a read of this head (the first or the second) attends over the mask embedding."""
        return (self.image_attention is not None and self.read == "mask_embedding") or \
            self.embedding_attention is not None

    def enable_embedding_read(self) -> None:
        """Add the second read over the mask embedding, silent at first: its output layer and its
        dense prompt's vector start at zero, so the prompts stay what they were until it trains."""
        if self.dense_prompt is None or self.read != "image_tokens":
            raise LisaError("a second read over the mask embedding goes beside a dense prompt from a read of the "
                            "image tokens: set seg_head_image_attention and seg_head_dense_prompt, and "
                            "seg_head_read: image_tokens")
        weight = self.fc2.weight
        read = ImageAttention(self.fc1.in_features, self.fc2.out_features, self.fc2.out_features).silence()
        self.embedding_attention = read.to(device=weight.device, dtype=weight.dtype)
        self.embedding_dense_prompt = nn.Parameter(torch.zeros(self.fc2.out_features, dtype=weight.dtype,
                                                               device=weight.device))

    def enable_dense_prompt(self) -> None:
        """Add the dense prompt's vector, zero: the masks stay what they were until it trains."""
        if self.image_attention is None:
            raise LisaError("a dense prompt from the seg head needs its image read: set seg_head_image_attention too")
        self.dense_prompt = nn.Parameter(torch.zeros(self.fc2.out_features, dtype=self.fc2.weight.dtype,
                                                     device=self.fc2.weight.device))

    def dense_prompts(self, attention: torch.Tensor, regions: list[tuple[int, int]], grid: tuple[int, int]) -> torch.Tensor:
        """attention [N, T] over a square t x t token grid that covers the whole image -> dense
        prompts [N, out_dim, *grid]: the map, scaled so that uniform attention is 1, resized onto
        ``regions[n]`` (rows, columns of the decoder's grid the image fills; the rest is padding
        and gets 0), times the learned vector."""
        assert self.dense_prompt is not None
        count, tokens = attention.shape
        side = attention_grid(attention)
        maps = (attention * tokens).reshape(count, 1, side, side)
        placed = maps.new_zeros(count, 1, *grid)
        for region in sorted(set(regions)):  # one resize per region size (one for square images)
            chosen = [n for n, r in enumerate(regions) if r == region]
            placed[chosen, :, : region[0], : region[1]] = F.interpolate(maps[chosen], region, mode="bilinear",
                                                                        align_corners=False)
        return placed * self.dense_prompt[None, :, None, None]

    def dense_prompts_on_grid(self, attention: torch.Tensor, valid: torch.Tensor, grid: tuple[int, int],
                              vector: torch.Tensor | None = None) -> torch.Tensor:
        """The same for a read over the mask embedding: attention [N, h * w] is already on the
        decoder's grid; valid [N, h * w] marks the cells the image fills (uniform over them is 1,
        padding gets 0). vector: the dense prompt's (None: ``dense_prompt``)."""
        vector = self.dense_prompt if vector is None else vector
        assert vector is not None
        maps = attention * valid.sum(-1, keepdim=True).to(attention.dtype)
        return maps.reshape(-1, 1, *grid) * vector[None, :, None, None]

    def forward(self, hidden: torch.Tensor, image_tokens: torch.Tensor | None = None,
                valid: torch.Tensor | None = None, embedding_cells: torch.Tensor | None = None,
                embedding_valid: torch.Tensor | None = None) -> torch.Tensor:
        """hidden [N, d] -> prompts [N, out_dim]; image_tokens [N, T, D]: each state's image tokens
        (needed with ``image_attention``, ignored without); valid [N, T]: the readable ones;
        embedding_cells [N, h * w, out_dim] and embedding_valid [N, h * w]: the same of each state's
        mask embedding for the second read (``embedding_read``)."""
        return self.prompts_and_attention(hidden, image_tokens, valid, embedding_cells, embedding_valid).prompts

    def normalised(self, hidden: torch.Tensor, track: bool = True) -> torch.Tensor:
        """The states as the head's layers see them: standardised with ``norm="batch"``.
        track=False: a second look at states the head has already normalised this step (the
        running statistics are not updated again)."""
        if self.norm is None:
            return hidden
        norm = self.norm
        # Batch statistics need two states or more; a lone [SEG] uses the running ones.
        batch_stats = self.training and hidden.shape[0] > 1
        update = batch_stats and track
        running_mean, running_var = (norm.running_mean, norm.running_var) if update or not batch_stats else (None, None)
        hidden = F.batch_norm(hidden, running_mean, running_var, norm.weight, norm.bias,
                              training=batch_stats, momentum=norm.momentum, eps=norm.eps)
        if update:
            norm.num_batches_tracked.add_(1)
        return hidden

    def prompts_and_attention(
        self, hidden: torch.Tensor, image_tokens: torch.Tensor | None = None, valid: torch.Tensor | None = None,
        embedding_cells: torch.Tensor | None = None, embedding_valid: torch.Tensor | None = None,
    ) -> SegProjection:
        """``forward`` and the attention of each read behind it."""
        hidden = self.normalised(hidden)
        prompts = self.fc2(self.act(self.fc1(hidden)))
        if self.image_attention is None:
            return SegProjection(prompts)
        if image_tokens is None:
            raise ValueError("this seg head reads the image tokens: pass image_tokens")
        prompts, weights = self._read(self.image_attention, hidden, prompts, image_tokens, valid)
        if self.embedding_attention is None:
            return SegProjection(prompts, weights)
        if embedding_cells is None or embedding_valid is None:
            raise ValueError("this seg head also reads the mask embedding: pass embedding_cells and embedding_valid")
        prompts, embedding_weights = self._read(self.embedding_attention, hidden, prompts, embedding_cells,
                                                embedding_valid)
        return SegProjection(prompts, weights, embedding_weights)

    @staticmethod
    def _read(read: ImageAttention, hidden: torch.Tensor, prompts: torch.Tensor, image_tokens: torch.Tensor,
              valid: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """prompts plus ``read``'s output, and its attention."""
        width = read.key.in_features
        if image_tokens.shape[-1] < width:
            raise LisaError(f"the seg head reads tokens of width {width}, got {image_tokens.shape[-1]}")
        tokens = image_tokens[..., :width].to(hidden.dtype)
        weights = read.weights(hidden, tokens, valid)
        return prompts + read.read(weights, tokens), weights
