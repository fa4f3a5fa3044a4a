"""The composite model: a VLM (any family with an adapter in ``lisa.model.vlms``: Llava,
Qwen2.5-VL, Qwen3-VL) + SAM + the seg head.

``forward`` is the teacher-forced training / validation pass with losses. Inference has two
paths on the model too: ``generate_segmentation`` (greedy generation with a KV cache, keeping
the hidden state that predicts each generated [SEG]) and ``teacher_forced_segmentation`` (the
answer is given). Both take prompt ids and encoded images and return answer ids, [SEG]
states and masks; ``lisa.inference.pipeline`` only loads, caches image encodings, batches and
formats. Every path decodes masks through ``masks_from_hidden``.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from transformers.initialization import no_init_weights

from lisa.batch import LisaBatch
from lisa.errors import LisaError
from lisa.model import sam as sam_ops
from lisa.model import vlm as vlm_ops
from lisa.model.config import LisaConfig
from lisa.model.losses import attention_cross_entropy_sum, mask_bce_sum, mask_dice_sum, text_ce_loss
from lisa.model.mask_backbones import ImageEmbedding, MaskBackbone, backbone_of_config, mask_backbone
from lisa.model.presence import PresenceHead, presence_features
from lisa.model.seg_head import SegHead, SegProjection
from lisa.model.vlms import VlmAdapter, VlmImages, adapter_for
from lisa.model.weights import load_weights, save_weights

if TYPE_CHECKING:
    from lisa.model.static_decode import StaticDecoder

__all__ = ["ImageEmbedding", "ImageEncoding", "LisaBatch", "LisaModel", "LisaOutput", "Segmentation", "default_dtype", "keep_rope_float32"]


@dataclass
class ImageEncoding:
    """B images as both towers see them: what inference reuses across queries."""

    features: torch.Tensor | list[torch.Tensor]  # per image [N_i, D] projected VLM features (or [B, N_img, D])
    sam_embeddings: ImageEmbedding  # the mask backbone's (a bare [B, C, h, w] tensor is read as SAM's)
    resized_sizes: list[tuple[int, int]]  # per image, mask-backbone view before padding
    original_sizes: list[tuple[int, int]]  # per image (H, W)
    vlm_grids: torch.Tensor | None = None  # [B, 3] patch grid per image (dynamic-resolution VLMs)


@dataclass
class Segmentation:
    """Per conversation: answer ids, the [SEG] states, mask logits and scores."""

    tokens: list[list[int]]  # generated ids (stop ids excluded), or [] when the answer was given
    seg_hidden: list[torch.Tensor]  # [n_seg, D]
    mask_logits: list[torch.Tensor]  # [n_seg, H, W] float32 at the original image size
    scores: list[torch.Tensor]  # [n_seg] float32, ``mask_scores`` of each mask
    mask_decode_ms: float = 0.0  # of the call's time, spent from [SEG] states to masks
    # [n_seg] float32 per conversation: the presence head's log-odds that each [SEG]'s object is
    # there (None: the model has no presence head); masks below its threshold are empty.
    presence: list[torch.Tensor] | None = None


@dataclass
class LisaOutput:
    loss: torch.Tensor
    ce_loss: torch.Tensor
    bce_loss: torch.Tensor
    dice_loss: torch.Tensor
    mask_logits: list[torch.Tensor]  # per image [n_i, H, W] float32
    num_masks: int
    # The loss's two terms with their graph (ce_weight * ce, bce_weight * bce + dice_weight * dice):
    # many-process training rescales each by its own global count (lisa.train.distributed).
    text_loss: torch.Tensor | None = None
    mask_loss: torch.Tensor | None = None
    presence_loss: torch.Tensor | None = None  # the presence head's mean BCE (trained with presence_weight)


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype) -> Iterator[None]:
    """Build modules directly in ``dtype`` (a 7B model never exists in float32)."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


class LisaModel(nn.Module):
    def __init__(self, config: LisaConfig, init_weights: bool = True) -> None:
        super().__init__()
        if config.seg_hidden_rule != "predecessor":
            raise LisaError(f"unknown seg_hidden_rule {config.seg_hidden_rule!r}; supported: predecessor")
        self.config = config
        self.adapter: VlmAdapter = adapter_for(config.vlm)
        init = contextlib.nullcontext() if init_weights else no_init_weights()
        with init:
            self.vlm = self.adapter.build(config.vlm_config(), config.projector)
            self.sam = backbone_of_config(config.sam).model_class(config.sam_config())
            self.seg_head = SegHead(config.hidden_size, config.out_dim, config.seg_head_norm,
                                    config.seg_head_image_attention, config.seg_head_dense_prompt,
                                    config.seg_head_read, config.seg_head_embedding_read)
            self.presence_head: PresenceHead | None = None
            if config.presence_head_width is not None:  # config.check: the seg head reads the tokens
                self.presence_head = PresenceHead.reading(self.seg_head, config.hidden_size, config.presence_head_width)
        # Aliased parameters (SAM's shared positional matrix, tied embeddings) are saved once.
        self.vlm.tie_weights()
        self.sam.tie_weights()

    @property
    def device(self) -> torch.device:
        return self.seg_head.fc1.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.seg_head.fc1.weight.dtype

    @property
    def mask_backbone(self) -> MaskBackbone:
        """The adapter around ``self.sam`` (built on demand: it holds no state of its own)."""
        return mask_backbone(self.sam)

    # ---- pieces shared by training and inference ---------------------------------------
    def embed_conversations(
        self, input_ids: torch.Tensor, vlm_pixels: torch.Tensor, image_index: torch.Tensor,
        vlm_grids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.conversation_inputs(input_ids, vlm_pixels, image_index, vlm_grids)[0]

    def conversation_inputs(
        self, input_ids: torch.Tensor, vlm_pixels: torch.Tensor, image_index: torch.Tensor,
        vlm_grids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict]:
        """Token embeddings [C, L, D] with the images spliced in, and the extra LM inputs the
        adapter derives from the images ({} but for DeepStack-style VLMs)."""
        return self.conversation_inputs_and_features(input_ids, vlm_pixels, image_index, vlm_grids)[:2]

    def conversation_inputs_and_features(
        self, input_ids: torch.Tensor, vlm_pixels: torch.Tensor, image_index: torch.Tensor,
        vlm_grids: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, dict, list[torch.Tensor]]:
        """``conversation_inputs`` and the image features spliced in (per image [N_i, F]), which
        a seg head with image attention reads again."""
        features = self.adapter.image_features(self.vlm, VlmImages(vlm_pixels, vlm_grids))
        return (*self._spliced(input_ids, features, image_index), features)

    def _spliced(
        self, input_ids: torch.Tensor, features: torch.Tensor | list[torch.Tensor], image_index: torch.Tensor
    ) -> tuple[torch.Tensor, dict]:
        image_id = self.config.image_token_id
        return vlm_ops.splice_images(self.vlm, input_ids, features, image_index, image_id)

    def position_ids(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, image_index: torch.Tensor,
        vlm_grids: torch.Tensor | None,
    ) -> torch.Tensor | None:
        """The VLM's rotary positions of conversations [C, L] ([C, L] or [3, C, L]); None: 1-D."""
        row_grids = None if vlm_grids is None else vlm_grids[image_index.to(vlm_grids.device)]
        return self.adapter.position_ids(self.vlm, input_ids, attention_mask, row_grids)

    def seg_positions(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows, cols) of the hidden states that predict each [SEG], row-major order.

        input_ids already hold the expanded image span, so the rule is just "one before"."""
        is_seg = input_ids[:, 1:] == self.config.seg_token_id
        rows, cols = torch.nonzero(is_seg, as_tuple=True)
        return rows, cols

    def masks_from_hidden(
        self,
        seg_hidden: torch.Tensor,
        seg_image: torch.Tensor,
        image_embeddings: ImageEmbedding | torch.Tensor,
        resized_sizes: list[tuple[int, int]],
        original_sizes: list[tuple[int, int]],
        image_features: torch.Tensor | list[torch.Tensor] | None = None,
        projection: SegProjection | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """[N, D] hidden states -> per image: mask logits [n_i, H, W] and decoder IoU estimates [n_i].
        image_features: the VLM's tokens of each image (read by a seg head with image attention);
        projection: ``project_seg_with_attention``'s output for these states, when the caller has
        it already.

        The one mask decoder of the project: training's ``forward`` and both inference paths
        (hence the pipeline and evaluation) call it."""
        backbone = self.mask_backbone
        embedding = ImageEmbedding.of(image_embeddings)
        if projection is None:
            projection = self.project_seg_with_attention(seg_hidden, seg_image, image_features, embedding,
                                                         resized_sizes)
        dense = self.dense_prompts(projection, seg_image, embedding, resized_sizes)
        low_res, iou = backbone.decode(embedding, projection.prompts, seg_image, dense)
        logits, scores = [], []
        for image in range(len(original_sizes)):
            chosen = seg_image == image
            logits.append(backbone.upscale(low_res[chosen], resized_sizes[image], original_sizes[image]))
            scores.append(iou[chosen].float())
        return logits, scores

    def dense_prompts(
        self, projection: SegProjection, seg_image: torch.Tensor, embedding: ImageEmbedding,
        resized_sizes: list[tuple[int, int]],
    ) -> torch.Tensor | None:
        """The seg head's dense prompts [N, C, h, w] from its reads' attention (None: the head has
        none); a second read's map over the mask embedding adds its own. The VLM's token grid
        covers the whole image (a processor that resizes without cropping, checked when the folder
        loads), so the map goes onto the part of the decoder's grid that the image fills."""
        head = self.seg_head
        if head.dense_prompt is None:
            return None
        attention = projection.attention
        if attention is None:
            raise ValueError("this seg head gives a dense prompt: pass the read's attention with the prompts")
        grid = (int(embedding.embeddings.shape[-2]), int(embedding.embeddings.shape[-1]))
        if head.read == "mask_embedding":
            dense = self.embedding_dense_prompts(attention, head.dense_prompt, seg_image, grid, resized_sizes)
        else:
            regions = [self.mask_backbone.image_region(resized_sizes[i], grid) for i in seg_image.tolist()]
            dense = head.dense_prompts(attention, regions, grid)
        if head.embedding_dense_prompt is not None:
            if projection.embedding_attention is None:
                raise ValueError("this seg head's second read gives a dense prompt: pass its attention")
            dense = dense + self.embedding_dense_prompts(projection.embedding_attention, head.embedding_dense_prompt,
                                                         seg_image, grid, resized_sizes)
        return dense.to(embedding.embeddings.dtype)

    def embedding_dense_prompts(
        self, attention: torch.Tensor, vector: torch.Tensor, seg_image: torch.Tensor, grid: tuple[int, int],
        resized_sizes: list[tuple[int, int]],
    ) -> torch.Tensor:
        """The dense prompts [N, C, *grid] of a read over the mask embedding (its attention [N, h * w]
        on ``read_grid``) with the dense vector ``vector``."""
        read_grid = self.read_grid(grid)
        valid = self.embedding_cells(seg_image, read_grid, resized_sizes)
        dense = self.seg_head.dense_prompts_on_grid(attention, valid, read_grid, vector)
        if read_grid != grid:  # a pooled read: its map, resized onto the decoder's grid, off the padding
            inside = self.embedding_cells(seg_image, grid, resized_sizes).reshape(-1, 1, *grid)
            dense = F.interpolate(dense, grid, mode="bilinear", align_corners=False) * inside
        return dense

    def read_grid(self, grid: tuple[int, int]) -> tuple[int, int]:
        """The grid a read over the mask embedding (the first or the second) sees:
        ``seg_head_read_grid`` a side (the embedding average-pooled), or the embedding's own ``grid``."""
        side = self.config.seg_head_read_grid
        if side is None:
            return grid
        if grid[0] % side or grid[1] % side:
            raise LisaError(f"seg_head_read_grid {side} does not divide the mask embedding's {grid[0]}x{grid[1]} grid")
        return (side, side)

    def embedding_cells(
        self, seg_image: torch.Tensor, grid: tuple[int, int], resized_sizes: list[tuple[int, int]]
    ) -> torch.Tensor:
        """[N, h * w] bool: the cells of the mask backbone's embedding grid that each state's image
        fills (the rest is the view's padding)."""
        rows = torch.arange(grid[0], device=seg_image.device)[:, None]
        cols = torch.arange(grid[1], device=seg_image.device)[None, :]
        regions = [self.mask_backbone.image_region(resized_sizes[int(i)], grid) for i in seg_image.tolist()]
        if not regions:
            return torch.zeros(0, grid[0] * grid[1], dtype=torch.bool, device=seg_image.device)
        return torch.stack([((rows < r) & (cols < c)).flatten() for r, c in regions])

    def project_seg(
        self, seg_hidden: torch.Tensor, seg_image: torch.Tensor, image_features: torch.Tensor | list[torch.Tensor] | None,
        image_embeddings: ImageEmbedding | None = None, resized_sizes: list[tuple[int, int]] | None = None,
    ) -> torch.Tensor:
        """[N, D] [SEG] states -> [N, out_dim] prompts; the image tokens of each state's image (or
        its mask embedding, with the image's resized size) go along when the seg head reads them."""
        return self.project_seg_with_attention(seg_hidden, seg_image, image_features, image_embeddings,
                                               resized_sizes).prompts

    def project_seg_with_attention(
        self, seg_hidden: torch.Tensor, seg_image: torch.Tensor, image_features: torch.Tensor | list[torch.Tensor] | None,
        image_embeddings: ImageEmbedding | None = None, resized_sizes: list[tuple[int, int]] | None = None,
    ) -> SegProjection:
        """``project_seg`` and the attention of the seg head's reads (SegProjection)."""
        head = self.seg_head
        state = seg_hidden.to(self.dtype)
        if head.image_attention is None:
            return head.prompts_and_attention(state)
        if head.read == "mask_embedding":
            cells, valid = self.embedding_read_cells(seg_image, image_embeddings, resized_sizes)
            return head.prompts_and_attention(state, cells, valid)
        if image_features is None:
            raise ValueError("this model's seg head reads the image tokens: pass image_features")
        if len({int(f.shape[0]) for f in image_features}) > 1:
            raise ValueError("a seg head that reads the image tokens needs the same token count for every "
                             "image (a fixed-size vision tower such as Llava's)")
        tokens = torch.stack([image_features[int(i)] for i in seg_image.tolist()] or
                             [image_features[0][:0]])  # no state: [0, N, F]
        if head.embedding_attention is None:
            return head.prompts_and_attention(state, tokens)
        cells, valid = self.embedding_read_cells(seg_image, image_embeddings, resized_sizes)
        return head.prompts_and_attention(state, tokens, None, cells, valid)

    def embedding_read_cells(
        self, seg_image: torch.Tensor, image_embeddings: ImageEmbedding | None,
        resized_sizes: list[tuple[int, int]] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What a read over the mask embedding sees of each state's image: its cells [N, h * w, C]
        on ``read_grid`` and which of them the image fills [N, h * w]."""
        if image_embeddings is None or resized_sizes is None:
            raise ValueError("this model's seg head reads the mask embedding: pass image_embeddings and resized_sizes")
        embeddings = image_embeddings.embeddings
        grid = self.read_grid((int(embeddings.shape[-2]), int(embeddings.shape[-1])))
        if grid != tuple(embeddings.shape[-2:]):
            embeddings = F.adaptive_avg_pool2d(embeddings, grid)
        cells = embeddings[seg_image].flatten(2).transpose(1, 2)  # [N, h * w, C]
        return cells, self.embedding_cells(seg_image, grid, resized_sizes)

    def conversation_hidden(
        self, embeds: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor, share_prefix: bool,
        position_ids: torch.Tensor | None = None,
        lm_inputs: dict | None = None,
    ) -> torch.Tensor:
        """Final-norm hidden states [C, L, D] of right-padded conversations; the prefix they all
        share (the system prompt) runs once unless gradient checkpointing (which drops caches)
        is on, or the LM takes extra image inputs. position_ids: the adapter's (None: 0, 1, ...)."""
        layers = self.adapter.language_model(self.vlm).layers
        checkpointing = self.training and any(getattr(layer, "gradient_checkpointing", False) for layer in layers)
        if share_prefix and not checkpointing and not lm_inputs:
            prefix = vlm_ops.shared_prefix_length(input_ids, attention_mask, self.config.image_token_id)
            if prefix > 0:
                return vlm_ops.language_hidden_shared_prefix(self.vlm, embeds, attention_mask, prefix, position_ids)
        return vlm_ops.language_hidden(self.vlm, embeds, attention_mask, position_ids, lm_inputs=lm_inputs)

    # ---- inference ---------------------------------------------------------------------
    @torch.no_grad()
    def encode_images(
        self,
        vlm_pixels: torch.Tensor,
        sam_pixels: torch.Tensor,
        resized_sizes: list[tuple[int, int]],
        original_sizes: list[tuple[int, int]],
        vlm_grids: torch.Tensor | None = None,
    ) -> ImageEncoding:
        """vlm_pixels and vlm_grids as the adapter's ``image_inputs`` gives them, sam_pixels
        [B, 3, S, S] (``mask_backbone.view``'s view)."""
        features = self.adapter.image_features(self.vlm, VlmImages(vlm_pixels.to(self.device), vlm_grids))
        embeddings = self.mask_backbone.embed(sam_pixels.to(self.device))
        return ImageEncoding(features, embeddings, list(resized_sizes), list(original_sizes), vlm_grids)

    @torch.no_grad()
    def generate_segmentation(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        images: ImageEncoding,
        image_index: torch.Tensor,
        max_new_tokens: int,
        stop_ids: list[int],
        banned_ids: list[int],
        decoder: StaticDecoder | None = None,
    ) -> Segmentation:
        """Greedy answers to left-padded prompts [C, L] (conversation c shows image
        ``image_index[c]``), and a mask for every generated [SEG]. ``decoder``: the GPU path
        (``static_decode``, same results); None: the eager loop."""
        embeds, lm_inputs = self._spliced(input_ids, images.features, image_index)
        position_ids = self.position_ids(input_ids, attention_mask, image_index, images.vlm_grids)
        decode = decoder.generate if decoder is not None else partial(vlm_ops.greedy_generate, self.vlm)
        generation = decode(
            embeds, attention_mask, max_new_tokens,
            stop_ids=stop_ids, seg_id=self.config.seg_token_id, banned_ids=banned_ids,
            position_ids=position_ids, lm_inputs=lm_inputs,
        )
        return self._segment(generation.tokens, generation.seg_hidden, images, image_index)

    @torch.no_grad()
    def teacher_forced_segmentation(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, images: ImageEncoding, image_index: torch.Tensor
    ) -> Segmentation:
        """Masks for the [SEG]s of answers already in the left-padded prompts [C, L]."""
        embeds, lm_inputs = self._spliced(input_ids, images.features, image_index)
        position_ids = self.position_ids(input_ids, attention_mask, image_index, images.vlm_grids)
        if position_ids is None:
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)
        hidden = vlm_ops.language_hidden(self.vlm, embeds, attention_mask, position_ids, lm_inputs=lm_inputs)
        rows, cols = self.seg_positions(input_ids)
        seg_hidden = [hidden[rows[rows == r], cols[rows == r]] for r in range(input_ids.shape[0])]
        return self._segment([[] for _ in seg_hidden], seg_hidden, images, image_index)

    def _segment(
        self, tokens: list[list[int]], seg_hidden: list[torch.Tensor], images: ImageEncoding, image_index: torch.Tensor
    ) -> Segmentation:
        """Per-conversation [SEG] states -> per-conversation masks, all in one decoder call."""
        start = time.perf_counter()
        counts = [h.shape[0] for h in seg_hidden]
        device = image_index.device
        if sum(counts) == 0:
            sizes = [images.original_sizes[int(i)] for i in image_index]
            empty = [torch.zeros(0, h, w, device=device) for h, w in sizes]
            return Segmentation(tokens, seg_hidden, empty, [torch.zeros(0, device=device) for _ in sizes])
        row_of_mask = torch.repeat_interleave(torch.arange(len(counts), device=device), torch.tensor(counts, device=device))
        image_of_mask = image_index[row_of_mask]
        states = torch.cat(seg_hidden)
        projection = self.project_seg_with_attention(states, image_of_mask, images.features,
                                                     ImageEmbedding.of(images.sam_embeddings), images.resized_sizes)
        per_image, iou_per_image = self.masks_from_hidden(
            states, image_of_mask, images.sam_embeddings, images.resized_sizes, images.original_sizes,
            images.features, projection,
        )
        logits, iou_estimates = [], []
        for row in range(len(counts)):
            image = int(image_index[row])
            chosen = row_of_mask[image_of_mask == image] == row
            logits.append(per_image[image][chosen])
            iou_estimates.append(iou_per_image[image][chosen])
        scores = [sam_ops.mask_scores(m) for m in logits]
        presence = None
        if self.presence_head is not None:
            presence = self._decline_absent(states, image_of_mask, images, logits, scores, iou_estimates, counts)
            scores = [sam_ops.mask_scores(m) for m in logits]
        return Segmentation(tokens, seg_hidden, logits, scores, (time.perf_counter() - start) * 1000.0, presence)

    def _decline_absent(
        self, states: torch.Tensor, image_of_mask: torch.Tensor, images: ImageEncoding, logits: list[torch.Tensor],
        scores: list[torch.Tensor], iou_estimates: list[torch.Tensor], counts: list[int],
    ) -> list[torch.Tensor]:
        """The presence head's log-odds of every [SEG] (per conversation); the mask logits of those
        below its threshold are set to the lowest value in place, so their masks come out empty."""
        assert self.presence_head is not None
        log_odds = self.presence_log_odds(states, image_of_mask, images.features, torch.cat(scores),
                                          torch.cat(iou_estimates), torch.cat([area_shares(m) for m in logits]))
        keep = self.presence_head.keeps(log_odds)
        for masks, kept in zip(logits, keep.split(counts)):
            masks[~kept] = torch.finfo(masks.dtype).min
        return list(log_odds.split(counts))

    def presence_log_odds(
        self, states: torch.Tensor, image_of_mask: torch.Tensor, image_features: torch.Tensor | list[torch.Tensor],
        mask_scores: torch.Tensor, iou_estimates: torch.Tensor, mask_area_shares: torch.Tensor,
    ) -> torch.Tensor:
        """[N] float32: the presence head's log-odds for N [SEG] states [N, D] on the images
        ``image_of_mask``, given their decoded masks' scores, IoU estimates and area shares [N]."""
        assert self.presence_head is not None and self.seg_head.image_attention is not None
        read = self.seg_head.image_attention
        normalised = self.seg_head.normalised(states.to(self.dtype), track=False)  # the seg head normalised them
        tokens = torch.stack([image_features[int(i)] for i in image_of_mask.tolist()])[..., :read.key.in_features]
        tokens = tokens.to(normalised.dtype)
        features = presence_features(normalised, read.scores(normalised, tokens), tokens, mask_scores,
                                     iou_estimates, mask_area_shares)
        return self.presence_head(features).float()

    # ---- teacher-forced forward --------------------------------------------------------
    def forward(self, batch: LisaBatch, share_prefix: bool = True, attention_weight: float = 0.0,
                presence_weight: float = 0.0) -> LisaOutput:
        """Teacher-forced losses. attention_weight > 0 (a seg head that reads the image tokens):
        the mask loss also counts that weight x the cross-entropy of the read's attention against
        each target's share of the image-token cells, per mask like BCE and DICE.

        presence_weight > 0 (a model with a presence head): every [SEG] is labelled by whether its
        target mask is empty (an absent object, ``no_target_as_empty_mask``) or not, and the loss
        adds that weight x the presence head's BCE, averaged over the [SEG]s. Its gradient reaches
        the [SEG] state and the read; the mask's score, IoU estimate and area go in as measurements
        (detached), so the decoder is not taught to blur the masks of absent objects. Empty targets
        then count in no mask loss: declining them is the presence head's job."""
        embeds, lm_inputs, features = self.conversation_inputs_and_features(
            batch.input_ids, batch.vlm_pixels, batch.image_index, batch.vlm_grids)
        position_ids = self.position_ids(batch.input_ids, batch.attention_mask, batch.image_index, batch.vlm_grids)
        hidden = self.conversation_hidden(
            embeds, batch.input_ids, batch.attention_mask, share_prefix, position_ids, lm_inputs
        )
        ce = text_ce_loss(hidden, batch.labels, self.adapter.lm_head(self.vlm))
        rows, cols = self.seg_positions(batch.input_ids)
        num_masks = sum(m.shape[0] for m in batch.masks)
        if rows.numel() != num_masks:
            raise ValueError(f"{rows.numel()} [SEG] tokens but {num_masks} target masks (truncated prompt?)")
        if presence_weight and self.presence_head is None:
            raise LisaError("presence_weight needs a model with a presence head (presence_head_width in its "
                            "lisa_config.json: configs/tiny-shapes/fit_presence_head.py fits one)")
        zero = hidden.sum() * 0.0
        bce, dice, attention_loss, presence_loss, per_image = zero, zero, zero, zero, []
        mask_count = num_masks  # the masks the mask loss averages over
        if num_masks:
            image_embeddings = self.batch_embeddings(batch)
            seg_image = batch.image_index[rows]
            projection = self.project_seg_with_attention(hidden[rows, cols], seg_image, features,
                                                         image_embeddings, batch.resized_sizes)
            per_image, iou_per_image = self.masks_from_hidden(
                hidden[rows, cols], seg_image, image_embeddings, batch.resized_sizes, batch.original_sizes,
                projection=projection,
            )
            if attention_weight:  # an empty target adds 0
                attention_loss = self.read_supervision_sum(projection, batch)
            target_by_image = _targets_by_image(batch)
            # Per image, which targets are there (not empty); None: every mask counts, as in the paper.
            present_by_image = [None if t is None else t.flatten(1).any(-1) for t in target_by_image]
            if presence_weight:
                presence_loss = self._presence_bce_mean(hidden[rows, cols], seg_image, features, per_image,
                                                        iou_per_image, present_by_image)
                mask_count = sum(int(present.sum()) for present in present_by_image if present is not None)
            for logits, target, present in zip(per_image, target_by_image, present_by_image):
                if logits.shape[0]:
                    if presence_weight:
                        logits, target = logits[present], target[present]
                    bce = bce + mask_bce_sum(logits, target)
                    dice = dice + mask_dice_sum(logits, target)
            bce, dice = bce / (mask_count + 1e-8), dice / (mask_count + 1e-8)
        cfg = self.config
        text_loss, mask_loss = cfg.ce_weight * ce, cfg.bce_weight * bce + cfg.dice_weight * dice
        loss = cfg.ce_weight * ce + cfg.bce_weight * bce + cfg.dice_weight * dice  # summed as always: same bits
        if attention_weight and num_masks:
            attention_loss = attention_weight * attention_loss / (mask_count + 1e-8)
            mask_loss, loss = mask_loss + attention_loss, loss + attention_loss
        if presence_weight and num_masks:
            mask_loss, loss = mask_loss + presence_weight * presence_loss, loss + presence_weight * presence_loss
        return LisaOutput(loss, ce.detach(), bce.detach(), dice.detach(), per_image, num_masks, text_loss, mask_loss,
                          presence_loss.detach() if presence_weight else None)

    def _presence_bce_mean(
        self, states: torch.Tensor, seg_image: torch.Tensor, features: torch.Tensor | list[torch.Tensor],
        per_image: list[torch.Tensor], iou_per_image: list[torch.Tensor], present_by_image: list[torch.Tensor | None],
    ) -> torch.Tensor:
        """The presence head's mean BCE over a batch's [SEG]s (label: the target is not empty).
        ``per_image`` and the rest group the [SEG]s by image; the states are regrouped so too."""
        order = torch.cat([torch.nonzero(seg_image == image).flatten() for image in range(len(per_image))])
        logits = [m.detach() for m in per_image]
        labels = torch.cat([present for present in present_by_image if present is not None]).float()
        log_odds = self.presence_log_odds(
            states[order], seg_image[order], features, torch.cat([sam_ops.mask_scores(m) for m in logits]),
            torch.cat(iou_per_image).detach(), torch.cat([area_shares(m) for m in logits]))
        return F.binary_cross_entropy_with_logits(log_odds, labels.to(log_odds.device))

    def batch_embeddings(self, batch: LisaBatch) -> ImageEmbedding:
        """The batch's mask embeddings: the training cache's, or encoded from its SAM pixels."""
        if batch.sam_embeddings is not None:
            return ImageEmbedding.of(batch.sam_embeddings)
        return self.mask_backbone.embed(batch.sam_pixels)

    def read_supervision_sum(self, projection: SegProjection, batch: LisaBatch) -> torch.Tensor:
        """Sum over the [SEG]s of each read's ``attention_cross_entropy_sum`` against its target's
        cells (0 without a read)."""
        total = projection.prompts.new_zeros(())
        if projection.attention is not None:
            total = attention_cross_entropy_sum(projection.attention, batch.masks, self.attention_frames(batch))
        if projection.embedding_attention is not None:
            total = total + attention_cross_entropy_sum(projection.embedding_attention, batch.masks,
                                                        self.embedding_frames(batch))
        return total

    def attention_frames(self, batch: LisaBatch) -> list[tuple[tuple[int, int], int]] | None:
        """Where the read's grid lies, per conversation, for its supervision (``target_cell_shares``):
        None for the VLM's tokens (the whole image); SAM's padded view for the mask embedding."""
        if self.seg_head.read != "mask_embedding":
            return None
        return self.embedding_frames(batch)

    def embedding_frames(self, batch: LisaBatch) -> list[tuple[tuple[int, int], int]]:
        """The mask backbone's padded view of each conversation's image: where a read over the mask
        embedding lies (``target_cell_shares``'s frames)."""
        backbone = self.mask_backbone
        return [(backbone.view_pixels(batch.resized_sizes[int(i)]), backbone.image_size)
                for i in batch.image_index.tolist()]

    # ---- persistence -------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save(directory)
        save_weights(self, directory)

    @classmethod
    def from_pretrained(
        cls, directory: str | Path, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"
    ) -> "LisaModel":
        directory = Path(directory)
        config = LisaConfig.load(directory)
        with default_dtype(dtype):
            model = cls(config, init_weights=False)
        load_weights(model, directory, device)
        return keep_rope_float32(model.to(device=device, dtype=dtype)).eval()


def keep_rope_float32(model: nn.Module) -> nn.Module:
    """``.to(bf16)`` also rounds the RoPE frequencies; the official model keeps them exact
    (fp32) and only rounds the resulting cos/sin. Restore them after any dtype cast."""
    for module in model.modules():
        if type(module).__name__.endswith("RotaryEmbedding") and hasattr(module, "inv_freq"):
            with torch.device(module.inv_freq.device):
                fresh = type(module)(module.config)  # tiny: only computes the frequencies
            module.inv_freq = fresh.inv_freq.float()
            if hasattr(module, "original_inv_freq"):
                module.original_inv_freq = fresh.inv_freq.float().clone()
    return model


def area_shares(logits: torch.Tensor) -> torch.Tensor:
    """[n, H, W] mask logits -> [n] float32: each binary mask's share of its image."""
    return (logits > 0).flatten(1).float().mean(-1)


def _targets_by_image(batch: LisaBatch) -> list[torch.Tensor | None]:
    """Per image, its conversations' target masks in conversation order, as float {0, 1}
    (ignore -> background, as in the official training)."""
    owners = batch.image_index.tolist()
    grouped: list[torch.Tensor | None] = []
    for image in range(len(batch.original_sizes)):
        masks = [m for m, owner in zip(batch.masks, owners) if owner == image and m.shape[0]]
        grouped.append(torch.cat([(m == 1).float() for m in masks]) if masks else None)
    return grouped
