"""The language side of any VLM: image features spliced into token embeddings, a forward that
returns the final-norm hidden states, and greedy generation with a KV cache that keeps the
hidden state predicting each generated [SEG] (the official code re-runs the whole model every
token). Backbone specifics (where the decoder stack lives, image features, rotary positions)
come from the VLM's adapter (``lisa.model.vlms``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import torch
from torch import nn
from transformers import DynamicCache

from lisa.model.vlms import adapter_of, last_text_position, text_positions


def embed_with_images(
    vlm: nn.Module,
    input_ids: torch.Tensor,
    features: torch.Tensor | Sequence[torch.Tensor],
    image_index: torch.Tensor,
    image_token_id: int,
) -> torch.Tensor:
    """Token embeddings [C, L, D] with each conversation's image span replaced by the features
    of its image. input_ids [C, L]; features per image [N_i, D] (a list, or [B, N_img, D]);
    image_index [C] (image of each row)."""
    return splice_images(vlm, input_ids, features, image_index, image_token_id)[0]


def splice_images(
    vlm: nn.Module,
    input_ids: torch.Tensor,
    features: torch.Tensor | Sequence[torch.Tensor],
    image_index: torch.Tensor,
    image_token_id: int,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """``embed_with_images`` and the extra keyword inputs of the LM's pass over these whole
    prompts: {} unless the adapter's image features are wider than the embeddings (Qwen3-VL:
    the DeepStack features of the image tokens), from one gather of the rows' features."""
    is_image = input_ids == image_token_id
    safe_ids = input_ids.masked_fill(is_image, 0)  # the placeholder id may lie outside the vocabulary
    embeds = vlm.get_input_embeddings()(safe_ids)
    row_features = _row_features(is_image, features, image_index)
    if row_features is None:
        return embeds, {}
    width = embeds.shape[-1]
    embeds = embeds.masked_scatter(is_image[..., None], row_features[:, :width].to(embeds.dtype))
    if row_features.shape[-1] == width:
        return embeds, {}
    return embeds, adapter_of(vlm).lm_image_inputs(vlm, is_image, row_features[:, width:])


def _row_features(
    is_image: torch.Tensor, features: torch.Tensor | Sequence[torch.Tensor], image_index: torch.Tensor
) -> torch.Tensor | None:
    """[M, F]: the features of every image token of the rows, in row-major order (None: no image
    token). Each row holds no image or exactly its image's N_i tokens."""
    per_row = is_image.sum(-1).tolist()
    expected = [int(features[int(i)].shape[0]) for i in image_index.tolist()]
    if any(n not in (0, want) for n, want in zip(per_row, expected)):
        raise ValueError(f"each conversation needs its image's {expected} image tokens, got {per_row}")
    rows = [features[int(i)] for i, n in zip(image_index.tolist(), per_row) if n > 0]
    return torch.cat(rows) if rows else None


def language_hidden(
    vlm: nn.Module,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor | None,
    position_ids: torch.Tensor | None = None,
    cache: DynamicCache | None = None,
    lm_inputs: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Final-norm hidden states [C, L, D]: the tensor that feeds lm_head. attention_mask [C, L
    (+ cached)], None: no padding. position_ids [C, L]
    or [3, C, L] (multimodal rotary); None: 0, 1, ... after what the cache holds. lm_inputs:
    ``splice_images``' extra inputs of these very rows and positions (prefill and training only)."""
    output = adapter_of(vlm).language_model(vlm)(
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        position_ids=position_ids,
        cache=cache,
        use_cache=cache is not None,
        **(lm_inputs or {}),
    )
    return output.last_hidden_state


def shared_prefix_length(input_ids: torch.Tensor, attention_mask: torch.Tensor, image_token_id: int) -> int:
    """How many leading tokens every row shares (BOS, system prompt, "USER:"), up to the first
    image token (image features differ per row) and leaving at least one token per row."""
    rows, length = input_ids.shape
    if rows < 2:
        return 0
    same = (input_ids == input_ids[:1]).all(0) & attention_mask.bool().all(0) & (input_ids[0] != image_token_id)
    differs = torch.nonzero(~same).flatten()
    prefix = int(differs[0]) if differs.numel() else length
    return min(prefix, length - 1)


def language_hidden_shared_prefix(
    vlm: nn.Module,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    prefix: int,
    position_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """``language_hidden`` of right-padded rows whose first ``prefix`` tokens are identical: the
    prefix runs once and its keys / values are shared by every row, gradients included. The
    result equals the plain forward (up to float rounding); on lisa-tiny's batches the system
    prompt is 81 of ~190 tokens, so the LM does ~40 % less work per training step.
    position_ids [C, L] or [3, C, L]; None: 0, 1, ... (right padding)."""
    rows, length = attention_mask.shape
    positions = position_ids
    if positions is None:
        positions = torch.arange(length, device=inputs_embeds.device)[None].expand(rows, -1)
    cache = DynamicCache(config=adapter_of(vlm).text_config(vlm))
    shared = language_hidden(vlm, inputs_embeds[:1, :prefix], attention_mask[:1, :prefix], positions[..., :1, :prefix], cache)
    cache.batch_repeat_interleave(rows)
    rest = language_hidden(vlm, inputs_embeds[:, prefix:], attention_mask, positions[..., prefix:], cache)
    return torch.cat([shared.expand(rows, -1, -1), rest], dim=1)


@dataclass
class Generation:
    tokens: list[list[int]]  # generated ids per row, EOS excluded
    seg_hidden: list[torch.Tensor]  # per row [n_seg, D]: states that predicted each [SEG]


def banned_bias(vocab: int, banned_ids: list[int], device: torch.device) -> torch.Tensor:
    """[vocab] float32: 0, or -inf at banned ids. Added to the logits it gives the same argmax
    as setting those logits to -inf, without indexing from a Python list every token."""
    bias = torch.zeros(vocab, device=device)
    bias[[i for i in banned_ids if 0 <= i < vocab]] = float("-inf")
    return bias


def collect_generation(picked: torch.Tensor, states: torch.Tensor, seg_id: int) -> Generation:
    """picked [C, n] ids, -1 where a row had already stopped (and for the stop id itself);
    states [C, n, D] the hidden state that predicted each pick. One read-back to the host;
    the [SEG] states are gathered where they are (row-major, so in answer order)."""
    seg_states = states[picked == seg_id]
    tokens = [[t for t in row if t >= 0] for row in picked.cpu().tolist()]
    return Generation(tokens, list(seg_states.split([row.count(seg_id) for row in tokens])))


# A decode step whose largest matrix (lm_head) is smaller than this (lisa-tiny: 1024 x 256; a 7B:
# 32000 x 4096) is a few dozen ops of microseconds each: split over threads, every op waits for
# all of them, and on a busy machine a thread that lost its core stalls the step (2 threads on
# a loaded 2-core machine: seconds per answer instead of ~40 ms).
SMALL_STEP_WEIGHTS = 1 << 22


@contextlib.contextmanager
def one_thread(enabled: bool = True) -> Iterator[None]:
    """torch on one CPU thread inside the block (when enabled), its setting restored after."""
    threads = torch.get_num_threads()
    if not enabled or threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@torch.no_grad()
def greedy_generate(
    vlm: nn.Module,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    stop_ids: list[int],
    seg_id: int,
    banned_ids: list[int],
    use_cache: bool = True,
    position_ids: torch.Tensor | None = None,
    lm_inputs: dict[str, Any] | None = None,
) -> Generation:
    """Greedy decoding of left-padded prompts until a stop id (EOS, end of turn).
    inputs_embeds [C, L, D], attention_mask [C, L]; position_ids the prompts' rotary positions
    ([C, L] or [3, C, L], the adapter's), None: 1-D from the attention mask. The eager
    reference; on CUDA the pipeline uses ``static_decode.StaticDecoder`` (same results, no
    per-token host work). Generated tokens are text: each takes the last position + 1.
    lm_inputs: ``splice_images``' extra inputs of the prompts (the prefill only; the cache holds their effect)."""
    device = inputs_embeds.device
    rows, length = attention_mask.shape
    if max_new_tokens < 1:
        return Generation([[] for _ in range(rows)], [inputs_embeds.new_zeros(0, inputs_embeds.shape[-1])] * rows)
    stops = torch.tensor(stop_ids, device=device)
    adapter = adapter_of(vlm)
    lm_head = adapter.lm_head(vlm)
    ban = banned_bias(lm_head.weight.shape[0], banned_ids, device)
    embed = vlm.get_input_embeddings()
    cache = DynamicCache(config=adapter.text_config(vlm)) if use_cache else None
    # Unpadded rows (a single query): no mask at all, which transformers would otherwise
    # rebuild and scan on every step only to drop it again (same SDPA call, fewer host ops).
    padded = not bool(attention_mask.all())
    full_mask = torch.cat([attention_mask, attention_mask.new_ones(rows, max_new_tokens)], dim=1) if padded else None
    if position_ids is None:
        position_ids = text_positions(attention_mask)
    if lm_inputs and not use_cache:
        raise ValueError("the uncached reference loop takes no extra LM inputs")
    hidden = language_hidden(vlm, inputs_embeds, attention_mask if padded else None, position_ids, cache, lm_inputs)[:, -1]
    next_position = last_text_position(position_ids)  # [C, 1], advanced before each step
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    picked: list[torch.Tensor] = []
    states: list[torch.Tensor] = []
    # The cached steps of a small LM on one thread (the prefill had them all). Like any change of
    # thread count this may move the last bits of a sum (MKL on an AMD EPYC: up to 1.5e-6 in
    # lisa-tiny's states; bit-identical on the Intel CPUs seen before); the tokens agree.
    small = use_cache and device.type == "cpu" and lm_head.weight.numel() < SMALL_STEP_WEIGHTS
    with one_thread(small):
        for step in range(max_new_tokens):
            next_ids = (lm_head(hidden).float() + ban).argmax(-1)
            stopped = torch.isin(next_ids, stops)
            picked.append(next_ids.masked_fill(finished | stopped, -1))
            states.append(hidden)
            finished |= stopped
            if step == max_new_tokens - 1 or bool(finished.all()):
                break
            next_embeds = embed(next_ids)[:, None]
            seen = full_mask[:, : length + step + 1] if padded else None
            next_position = next_position + 1
            if use_cache:
                hidden = language_hidden(vlm, next_embeds, seen, next_position, cache)[:, -1]
            else:  # reference path for tests: re-run the whole sequence
                position_ids = torch.cat([position_ids, next_position.expand(position_ids.shape[:-1] + (1,))], dim=-1)
                inputs_embeds = torch.cat([inputs_embeds, next_embeds], dim=1)
                hidden = language_hidden(vlm, inputs_embeds, seen, position_ids)[:, -1]
    return collect_generation(torch.stack(picked, 1), torch.stack(states, 1), seg_id)
