"""Greedy decoding built for the GPU: a static KV cache and a one-token step that a CUDA graph
replays, with no host sync per token.

The eager loop (``vlm.greedy_generate``) grows a ``DynamicCache``, rebuilds the attention mask
and reads every token back to the host; on a GPU that costs more than the kernels (at batch 1,
a 7B decode step is ~3 ms of weight reads but ~19 ms of Python and launches). Here:

- every tensor the step touches has a fixed shape and address: a ``StaticCache`` of
  ``cache_len`` slots, a key-validity mask [B, cache_len] (left padding, slots not yet written),
  positions, the step counter and the cache slot are tensors updated in place;
- the step (embed the last token -> LM -> lm_head -> argmax -> record) is captured once per
  (batch, cache length, max new tokens) in a ``torch.cuda.CUDAGraph`` and replayed; optionally
  the step is ``torch.compile``d first (fused kernels), then captured;
- stop ids set on-device "done" flags; the host reads them once every ``check_every`` steps;
- each step logs its hidden state, and the states that predicted a [SEG] are gathered on the
  device at the end (one read-back of the tokens per call).

Prefill runs eagerly over the left-padded batch (SDPA, an explicit 4-D boolean mask) into the
same cache. On CPU the same code runs without graphs: the tests compare it with the eager
loop, token for token and [SEG] state for [SEG] state.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from transformers import StaticCache

from lisa.model.vlm import Generation, banned_bias, collect_generation
from lisa.model.vlms import adapter_of, last_text_position, text_positions

CACHE_BUCKET = 128  # cache lengths are rounded up to this, so a new prompt length rarely recaptures


@dataclass
class _Buffers:
    """Fixed-address state of one decode shape; the captured step reads and writes only these."""

    cache: StaticCache
    key_valid: torch.Tensor  # [B, T] bool: slot holds a real token of this row
    positions: torch.Tensor  # [B, 1] long: RoPE position of the token fed next
    slot: torch.Tensor  # [1] long: cache slot the token fed next is written to
    step: torch.Tensor  # [1] long: index of the token picked next
    hidden: torch.Tensor  # [B, D] final-norm state of the last position
    next_ids: torch.Tensor  # [B] long: token picked last (fed next)
    finished: torch.Tensor  # [B] bool: a stop id was picked
    tokens: torch.Tensor  # [B, N] long: picked ids, -1 after the stop (and for the stop itself)
    hidden_log: torch.Tensor  # [B, N, D] the state that predicted each picked token
    ban: torch.Tensor  # [V] float32: 0, or -inf at banned ids
    stops: torch.Tensor  # [S] long: stop ids


class StaticDecoder:
    """Greedy generation with the same contract as ``vlm.greedy_generate``; keeps the buffers
    (and CUDA graphs) of the last few shapes so that repeated calls only replay."""

    def __init__(
        self,
        vlm: nn.Module,
        use_graphs: bool | None = None,
        compile_step: bool = False,
        check_every: int = 4,
        max_shapes: int = 3,
    ) -> None:
        """``use_graphs``: capture the step in a CUDA graph (default: on CUDA); ``compile_step``:
        ``torch.compile`` it first; ``check_every``: steps between reads of the done flags;
        ``max_shapes``: buffer sets (each a full KV cache) kept for reuse."""
        adapter = adapter_of(vlm)
        self.vlm = vlm
        self.language_model = adapter.language_model(vlm)
        self.lm_head = adapter.lm_head(vlm)
        self.text_config = adapter.text_config(vlm)
        self.check_every = max(1, check_every)
        self.max_shapes = max_shapes
        self.device = self.lm_head.weight.device
        self.use_graphs = self.device.type == "cuda" if use_graphs is None else use_graphs
        if self.use_graphs and self.device.type != "cuda":
            raise ValueError("CUDA graphs need the model on a CUDA device")
        self._step: Callable[[_Buffers], None] = self._advance_and_pick
        if compile_step:
            self._step = torch.compile(self._advance_and_pick, dynamic=False, fullgraph=False)
        self._shapes: OrderedDict[tuple, tuple[_Buffers, torch.cuda.CUDAGraph | None]] = OrderedDict()

    # ---- public ------------------------------------------------------------------------
    @torch.no_grad()
    def generate(
        self,
        inputs_embeds: torch.Tensor,
        attention_mask: torch.Tensor,
        max_new_tokens: int,
        stop_ids: list[int],
        seg_id: int,
        banned_ids: list[int],
        position_ids: torch.Tensor | None = None,
        lm_inputs: dict[str, Any] | None = None,
    ) -> Generation:
        """``vlm.greedy_generate``'s arguments and result: left-padded prompts inputs_embeds
        [B, L, D], attention_mask [B, L] (position_ids: the adapter's, None: 1-D; lm_inputs:
        the prefill's extra LM inputs) -> generated ids (stop excluded) and the states that
        predicted each [SEG]."""
        rows, length, _ = inputs_embeds.shape
        if max_new_tokens < 1:
            return Generation([[] for _ in range(rows)], [inputs_embeds.new_zeros(0, inputs_embeds.shape[-1])] * rows)
        cache_len = -(-(length + max_new_tokens) // CACHE_BUCKET) * CACHE_BUCKET
        key = (rows, cache_len, max_new_tokens, inputs_embeds.dtype, tuple(stop_ids), tuple(banned_ids))
        buffers, graph = self._shape(key)
        self._prefill(buffers, inputs_embeds, attention_mask, position_ids, lm_inputs or {})
        self._pick(buffers)
        done = 1
        while done < max_new_tokens and not bool(buffers.finished.all()):  # one sync per chunk
            for _ in range(min(self.check_every, max_new_tokens - done)):
                if graph is not None:
                    graph.replay()
                else:
                    self._step(buffers)
                done += 1
        return collect_generation(buffers.tokens[:, :done], buffers.hidden_log[:, :done], seg_id)

    # ---- one shape's buffers and graph -------------------------------------------------
    def _shape(self, key: tuple) -> tuple[_Buffers, torch.cuda.CUDAGraph | None]:
        if key in self._shapes:
            self._shapes.move_to_end(key)
            return self._shapes[key]
        while len(self._shapes) >= self.max_shapes:  # a 7B cache at batch 32 is gigabytes
            self._shapes.popitem(last=False)
        buffers = self._allocate(*key)
        graph = self._capture(buffers) if self.use_graphs and key[2] > 1 else None  # 1 token: no step
        self._shapes[key] = (buffers, graph)
        return buffers, graph

    def _allocate(
        self, rows: int, cache_len: int, new_tokens: int, dtype: torch.dtype, stop_ids: tuple, banned_ids: tuple
    ) -> _Buffers:
        config = self.text_config
        device = self.device
        cache = StaticCache(config=config, max_cache_len=cache_len)
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        cache.early_initialization(rows, config.num_key_value_heads, head_dim, dtype, device)
        width = config.hidden_size
        long = dict(dtype=torch.long, device=device)
        return _Buffers(
            cache=cache,
            key_valid=torch.zeros(rows, cache_len, dtype=torch.bool, device=device),
            positions=torch.zeros(rows, 1, **long),
            slot=torch.zeros(1, **long),
            step=torch.zeros(1, **long),
            hidden=torch.zeros(rows, width, dtype=dtype, device=device),
            next_ids=torch.zeros(rows, **long),
            finished=torch.zeros(rows, dtype=torch.bool, device=device),
            tokens=torch.full((rows, new_tokens), -1, **long),
            hidden_log=torch.zeros(rows, new_tokens, width, dtype=dtype, device=device),
            ban=banned_bias(self.lm_head.weight.shape[0], list(banned_ids), device),
            stops=torch.tensor(stop_ids, dtype=torch.long, device=device),
        )

    def _capture(self, buffers: _Buffers) -> torch.cuda.CUDAGraph | None:
        """Record one step. Warm-up runs (which allocate, autotune, compile) happen on a side
        stream first, as CUDA graphs require; each starts from a reset state so that its
        indices stay in range, and each prefill resets what they leave. A step that cannot be
        captured (a kernel that syncs with the host) runs uncaptured: slower, same results."""
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(3):
                self._reset(buffers)
                self._step(buffers)
        torch.cuda.current_stream().wait_stream(side)
        self._reset(buffers)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                self._step(buffers)
        except RuntimeError as error:
            warnings.warn(f"the decode step could not be captured in a CUDA graph ({error}); running it uncaptured")
            torch.cuda.synchronize()
            return None
        return graph

    # ---- the steps ---------------------------------------------------------------------
    @staticmethod
    def _reset(buffers: _Buffers) -> None:
        # Only the write position is rewound: stale keys past it are masked by key_valid.
        for layer in buffers.cache.layers:
            layer.cumulative_length.zero_()
        buffers.key_valid.zero_()
        buffers.slot.zero_()
        buffers.step.zero_()
        buffers.finished.zero_()
        buffers.tokens.fill_(-1)

    def _prefill(
        self, buffers: _Buffers, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor,
        positions: torch.Tensor | None, lm_inputs: dict[str, Any],
    ) -> None:
        self._reset(buffers)
        length = inputs_embeds.shape[1]
        real = attention_mask.bool()
        buffers.key_valid[:, :length] = real
        cache_len = buffers.key_valid.shape[1]
        query = torch.arange(length, device=real.device)[:, None]
        key = torch.arange(cache_len, device=real.device)[None, :]
        # Causal over real keys; a padding query sees itself only (a row with no key would be NaN).
        mask = (buffers.key_valid[:, None, :] & (key <= query)) | (key == query)
        if positions is None:
            positions = text_positions(attention_mask)
        hidden = self.language_model(
            inputs_embeds=inputs_embeds, attention_mask=mask[:, None], position_ids=positions,
            cache=buffers.cache, use_cache=True, **lm_inputs,
        ).last_hidden_state[:, -1]
        buffers.hidden.copy_(hidden)
        buffers.positions.copy_(last_text_position(positions) + 1)
        buffers.slot.fill_(length)

    def _pick(self, buffers: _Buffers) -> None:
        """Greedy choice from ``hidden``: record it (unless the row already stopped), set flags."""
        logits = self.lm_head(buffers.hidden).float() + buffers.ban
        ids = logits.argmax(-1)
        stopped = (ids[:, None] == buffers.stops).any(-1)
        kept = torch.where(buffers.finished | stopped, torch.full_like(ids, -1), ids)
        buffers.tokens.index_copy_(1, buffers.step, kept[:, None])
        buffers.hidden_log.index_copy_(1, buffers.step, buffers.hidden[:, None])
        buffers.finished.logical_or_(stopped)
        buffers.next_ids.copy_(ids)
        buffers.step.add_(1)

    def _advance_and_pick(self, buffers: _Buffers) -> None:
        """Feed the last pick through the LM (one position, written at ``slot``) and pick again."""
        embeds = self.vlm.get_input_embeddings()(buffers.next_ids)[:, None]
        buffers.key_valid.index_fill_(1, buffers.slot, True)
        hidden = self.language_model(
            inputs_embeds=embeds, attention_mask=buffers.key_valid[:, None, None, :],
            position_ids=buffers.positions, cache=buffers.cache, use_cache=True,
        ).last_hidden_state[:, -1]
        buffers.hidden.copy_(hidden)
        buffers.positions.add_(1)
        buffers.slot.add_(1)
        self._pick(buffers)


def graphs_capturable(vlm: nn.Module) -> bool:
    """bitsandbytes' 8-bit matmul splits outliers with data-dependent shapes (host syncs), which
    a CUDA graph cannot record; 4-bit and plain layers are fine."""
    return not any(type(module).__name__ == "Linear8bitLt" for module in vlm.modules())


def decoder_for(vlm: nn.Module) -> StaticDecoder | None:
    """The default decoder of a device: the static path on CUDA (graphs unless 8-bit), None
    (the eager ``greedy_generate``) elsewhere."""
    if adapter_of(vlm).lm_head(vlm).weight.device.type != "cuda":
        return None
    return StaticDecoder(vlm, use_graphs=graphs_capturable(vlm))


def compile_image_encoder(sam: torch.nn.Module) -> None:
    """Compile SAM's image encoder in place (``Module.compile`` keeps the state-dict names); the
    ViT-H encoder is the largest single cost of a new image on a GPU."""
    from lisa.model.mask_backbones import mask_backbone

    mask_backbone(sam).compile_encoder()
