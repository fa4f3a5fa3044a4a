"""The Llava side: image features spliced into token embeddings, a forward that returns the
final-norm hidden states, and greedy generation with a KV cache that keeps the hidden state
predicting each generated [SEG] (the official code re-runs the whole model every token).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import DynamicCache, LlavaForConditionalGeneration


def image_features(vlm: LlavaForConditionalGeneration, pixel_values: torch.Tensor) -> torch.Tensor:
    """[B, 3, h, w] -> projected image features [B, N_img, D]."""
    output = vlm.model.get_image_features(pixel_values=pixel_values.to(vlm.dtype), return_dict=True)
    return torch.stack(list(output.pooler_output))


def embed_with_images(
    vlm: LlavaForConditionalGeneration,
    input_ids: torch.Tensor,
    features: torch.Tensor,
    image_index: torch.Tensor,
    image_token_id: int,
) -> torch.Tensor:
    """Token embeddings [C, L, D] with each conversation's image span replaced by the features
    of its image. input_ids [C, L]; features [B, N_img, D]; image_index [C] (image of each row)."""
    is_image = input_ids == image_token_id
    safe_ids = input_ids.masked_fill(is_image, 0)  # the placeholder id may lie outside the vocabulary
    embeds = vlm.get_input_embeddings()(safe_ids)
    per_row = is_image.sum(-1)
    expected = features.shape[1]
    if not bool(((per_row == expected) | (per_row == 0)).all()):
        raise ValueError(f"each conversation needs exactly {expected} image tokens, got {per_row.tolist()}")
    row_features = features[image_index][per_row > 0].reshape(-1, features.shape[-1])
    return embeds.masked_scatter(is_image[..., None], row_features.to(embeds.dtype))


def language_hidden(
    vlm: LlavaForConditionalGeneration,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor | None = None,
    cache: DynamicCache | None = None,
) -> torch.Tensor:
    """Final-norm hidden states [C, L, D]: the tensor that feeds lm_head."""
    output = vlm.model.language_model(
        inputs_embeds=inputs_embeds,
        attention_mask=attention_mask,
        position_ids=position_ids,
        cache=cache,
        use_cache=cache is not None,
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
    vlm: LlavaForConditionalGeneration, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, prefix: int
) -> torch.Tensor:
    """``language_hidden`` of right-padded rows whose first ``prefix`` tokens are identical: the
    prefix runs once and its keys / values are shared by every row, gradients included. The
    result equals the plain forward (up to float rounding); on lisa-tiny's batches the system
    prompt is 81 of ~190 tokens, so the LM does ~40 % less work per training step."""
    rows, length = attention_mask.shape
    positions = torch.arange(length, device=inputs_embeds.device)[None].expand(rows, -1)
    cache = DynamicCache(config=vlm.config.text_config)
    shared = language_hidden(vlm, inputs_embeds[:1, :prefix], attention_mask[:1, :prefix], positions[:1, :prefix], cache)
    cache.batch_repeat_interleave(rows)
    rest = language_hidden(vlm, inputs_embeds[:, prefix:], attention_mask, positions[:, prefix:], cache)
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


@torch.no_grad()
def greedy_generate(
    vlm: LlavaForConditionalGeneration,
    inputs_embeds: torch.Tensor,
    attention_mask: torch.Tensor,
    max_new_tokens: int,
    stop_ids: list[int],
    seg_id: int,
    banned_ids: list[int],
    use_cache: bool = True,
) -> Generation:
    """Greedy decoding of left-padded prompts until a stop id (EOS, end of turn).
    inputs_embeds [C, L, D], attention_mask [C, L]. The eager reference; on CUDA the pipeline
    uses ``static_decode.StaticDecoder`` (same results, no per-token host work)."""
    device = inputs_embeds.device
    rows, length = attention_mask.shape
    if max_new_tokens < 1:
        return Generation([[] for _ in range(rows)], [inputs_embeds.new_zeros(0, inputs_embeds.shape[-1])] * rows)
    stops = torch.tensor(stop_ids, device=device)
    ban = banned_bias(vlm.lm_head.weight.shape[0], banned_ids, device)
    embed = vlm.get_input_embeddings()
    cache = DynamicCache(config=vlm.config.text_config) if use_cache else None
    full_mask = torch.cat([attention_mask, attention_mask.new_ones(rows, max_new_tokens)], dim=1)
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    hidden = language_hidden(vlm, inputs_embeds, attention_mask, position_ids, cache)[:, -1]
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    picked: list[torch.Tensor] = []
    states: list[torch.Tensor] = []
    for step in range(max_new_tokens):
        next_ids = (vlm.lm_head(hidden).float() + ban).argmax(-1)
        stopped = torch.isin(next_ids, stops)
        picked.append(next_ids.masked_fill(finished | stopped, -1))
        states.append(hidden)
        finished |= stopped
        if step == max_new_tokens - 1 or bool(finished.all()):
            break
        next_embeds = embed(next_ids)[:, None]
        seen = full_mask[:, : length + step + 1]
        next_position = position_ids[:, -1:] + 1
        position_ids = torch.cat([position_ids, next_position], dim=1)
        if use_cache:
            hidden = language_hidden(vlm, next_embeds, seen, next_position, cache)[:, -1]
        else:  # reference path for tests: re-run the whole sequence
            inputs_embeds = torch.cat([inputs_embeds, next_embeds], dim=1)
            hidden = language_hidden(vlm, inputs_embeds, seen, position_ids)[:, -1]
    return collect_generation(torch.stack(picked, 1), torch.stack(states, 1), seg_id)
