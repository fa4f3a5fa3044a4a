"""Samples -> one LisaBatch: both image views, tokenised conversations, target masks."""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from lisa.data.image_io import load_image
from lisa.data.sample import Sample
from lisa.data.transforms import SamView, sam_view
from lisa.batch import LisaBatch
from lisa.model.prompting import IGNORE_INDEX, PromptBuilder


class Collator:
    """Callable for a DataLoader: list[Sample] -> LisaBatch (right padding)."""

    def __init__(self, builder: PromptBuilder, image_processor, mask_view: int | Callable[[np.ndarray], SamView]) -> None:
        """``mask_view``: the mask backbone's view (``LisaModel.mask_backbone.view``), or an int
        S for SAM's own (longest side S, padded)."""
        self.builder = builder
        self.image_processor = image_processor
        self.mask_view = mask_view if callable(mask_view) else (lambda image: sam_view(image, mask_view))
        pad = builder.tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else builder.eos_id)
        self.vlm_config = builder.config.vlm_config()

    def __call__(self, samples: list[Sample]) -> LisaBatch:
        images = [load_image(sample.image) for sample in samples]
        sam_views = [self.mask_view(image) for image in images]
        adapter = self.builder.adapter
        vlm_images = adapter.image_inputs(images, self.image_processor)
        token_counts = adapter.image_token_counts(self.vlm_config, vlm_images)
        encoded, image_index, masks = [], [], []
        for index, sample in enumerate(samples):
            for conversation in sample.conversations:
                encoded.append(self.builder.build(list(conversation.turns), token_counts[index]))
                image_index.append(index)
                masks.append(torch.from_numpy(np.ascontiguousarray(conversation.masks)))
        input_ids, labels, attention = pad_right(
            [e.input_ids for e in encoded], [e.labels for e in encoded], self.pad_id
        )
        return LisaBatch(
            input_ids=input_ids,
            attention_mask=attention,
            labels=labels,
            image_index=torch.tensor(image_index, dtype=torch.long),
            vlm_pixels=vlm_images.pixels,
            sam_pixels=torch.stack([v.pixels for v in sam_views]),
            resized_sizes=[v.resized_size for v in sam_views],
            original_sizes=[v.original_size for v in sam_views],
            masks=masks,
            meta=[{"source": s.source, **s.meta} for s in samples],
            vlm_grids=vlm_images.grids,
        )


def pad_right(
    ids: list[list[int]], labels: list[list[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    length = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), length), pad_id, dtype=torch.long)
    label_ids = torch.full((len(ids), length), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(ids), length), dtype=torch.long)
    for row, (tokens, targets) in enumerate(zip(ids, labels)):
        input_ids[row, : len(tokens)] = torch.tensor(tokens)
        label_ids[row, : len(targets)] = torch.tensor(targets)
        attention[row, : len(tokens)] = 1
    return input_ids, label_ids, attention
