"""A [SEG]-state warm-up for LISA stages trained from scratch: teach the seg head *where* the
target is before asking it for masks.

For the first ``seg_warmup.steps`` optimizer steps, the mask loss (BCE + DICE through SAM's
decoder) is replaced by a regression of each projected [SEG] state onto SAM's own one-token
embedding of the target's box (``lisa.train.sam_pretrain.box_token``: the mean of the prompt
encoder's two corner tokens). A SAM stage trained with ``box_token_every`` already decodes that
token into the boxed object, so the LLM only has to learn to point, not a new prompt language;
afterwards the usual BCE + DICE loss trains end to end. The text loss is kept throughout.

The prompt encoder is frozen in the LISA stages, so the regression targets do not move.

With a seg head that reads the image tokens (``seg_head_image_attention``), ``attention_weight``
adds a cross-entropy between that read's attention over the tokens and the target's share of
each token's cell (square token grids: the VLM's view is the whole image, resized), so that the
read learns to find the named object rather than wait for the mask loss to show it where.
"""

from __future__ import annotations

import torch

from lisa.model.lisa import LisaBatch, LisaModel, LisaOutput
from lisa.model.losses import text_ce_loss
from lisa.train.sam_pretrain import box_token


def target_boxes(batch: LisaBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Every [SEG]'s target box in SAM input pixels (x0, y0, x1, y1), in [SEG] order, and
    which of them have a non-empty target ([N, 4], [N] bool)."""
    owners = batch.image_index.tolist()
    boxes, present = [], []
    for masks, image in zip(batch.masks, owners):
        (resized_h, resized_w), (height, width) = batch.resized_sizes[image], batch.original_sizes[image]
        scale = torch.tensor([resized_w / width, resized_h / height] * 2)
        for mask in masks:
            ys, xs = torch.nonzero(mask == 1, as_tuple=True)
            present.append(bool(len(xs)))
            if not len(xs):
                boxes.append(torch.zeros(4))
                continue
            box = torch.stack([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]).float()
            boxes.append(box * scale)
    if not boxes:
        return torch.zeros(0, 4), torch.zeros(0, dtype=torch.bool)
    return torch.stack(boxes), torch.tensor(present)


def warmup_forward(model: LisaModel, batch: LisaBatch, weight: float, share_prefix: bool = True,
                   attention_weight: float = 0.0) -> LisaOutput:
    """The text loss plus ``weight`` x mean squared error between each projected [SEG] state
    and its target's box token (reported in the ``bce_loss`` slot is 0, ``dice_loss`` holds the
    regression error, so logs keep their columns), plus ``attention_weight`` x the cross-entropy
    of the seg head's image attention against the targets' cells (``attention_cross_entropy_sum``;
    in the ``loss`` only)."""
    embeds, lm_inputs, features = model.conversation_inputs_and_features(
        batch.input_ids, batch.vlm_pixels, batch.image_index, batch.vlm_grids)
    position_ids = model.position_ids(batch.input_ids, batch.attention_mask, batch.image_index, batch.vlm_grids)
    hidden = model.conversation_hidden(
        embeds, batch.input_ids, batch.attention_mask, share_prefix, position_ids, lm_inputs
    )
    ce = text_ce_loss(hidden, batch.labels, model.adapter.lm_head(model.vlm))
    rows, cols = model.seg_positions(batch.input_ids)
    boxes, present = target_boxes(batch)
    if rows.numel() != len(boxes):
        raise ValueError(f"{rows.numel()} [SEG] tokens but {len(boxes)} target masks (truncated prompt?)")
    regression = attention_loss = hidden.sum() * 0.0
    if bool(present.any()):
        # Only a read over the mask embedding needs the images' embeddings here.
        embeddings = model.batch_embeddings(batch) if model.seg_head.reads_mask_embedding else None
        projection = model.project_seg_with_attention(hidden[rows, cols], batch.image_index[rows], features,
                                                      embeddings, batch.resized_sizes)
        prompts = projection.prompts[present]
        with torch.no_grad():
            targets = box_token(model.sam, boxes[present].to(prompts.device))
        regression = ((prompts - targets.to(prompts.dtype)) ** 2).mean()
        if attention_weight and projection.attention is not None:
            attention_loss = model.read_supervision_sum(projection, batch) / int(present.sum())
    loss = ce + weight * regression + attention_weight * attention_loss
    zero = regression.detach() * 0.0
    return LisaOutput(loss, ce.detach(), zero, regression.detach(), [], int(present.sum()))
