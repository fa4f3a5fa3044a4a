"""The training stream from the config: a mixture of dataset groups (or one dataset folder),
micro-batches by stream position (so a resumed run continues exactly where it stopped), and
the SAM image-embedding cache.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch

from lisa.data.mixture import Mixture, TrainSource
from lisa.data.sample import Sample
from lisa.errors import LisaError
from lisa.model.lisa import ImageEmbedding, LisaModel
from lisa.train.config import DataSource, TrainConfig


def build_group(source: DataSource, config: TrainConfig) -> list[TrainSource]:
    """The loaders of one mixture group (each loader is drawn uniformly inside the group)."""
    data_dir = Path(source.dir)
    if source.type == "synthetic":
        from lisa.train.synthetic import write_synthetic

        write_synthetic(data_dir, source.images, source.image_size, seed=config.seed)
    if source.type in ("jsonl", "synthetic"):
        from lisa.data.jsonl import JsonlTrain

        return [JsonlTrain(data_dir, source.split, config.max_queries, source=source.type, names=source.names,
                           no_target_as_empty_mask=source.no_target_as_empty_mask)]
    if source.type == "reason_seg":
        from lisa.data.reason_seg import ReasonSegTrain

        explanations = Path(source.explanatory_path) if source.explanatory_path else None
        return [ReasonSegTrain(data_dir, source.split, source.explanatory, explanations, config.max_queries,
                               source.explain_first)]
    if source.type == "vqa":
        from lisa.data.vqa import LlavaInstruct

        return [LlavaInstruct(data_dir)]
    if not source.names:
        raise LisaError(f"data type {source.type} needs 'names' (e.g. refcoco, ade20k)")
    if source.type == "refer_seg":
        from lisa.data.refer_seg import ReferTrain

        return [ReferTrain(data_dir, name, source.split, config.max_queries) for name in source.names]
    from lisa.data.sem_seg import semantic_dataset

    return [semantic_dataset(data_dir, name, config.max_queries) for name in source.names]


def build_mixture(config: TrainConfig) -> Mixture:
    groups = [build_group(source, config) for source in config.data]
    return Mixture(groups, [source.rate for source in config.data], seed=config.seed)


def micro_batch(mixture: Mixture, position: int, batch_size: int, rank: int, world: int) -> list[Sample]:
    """This process's samples of the global micro-batch starting at stream ``position``
    (the global micro-batch holds ``batch_size * world`` samples). Rank r takes positions
    position + r * batch_size onwards, so N processes x b draw exactly what 1 x N*b draws, in
    the same order, and no two processes draw the same position (lisa.train.distributed)."""
    start = position + rank * batch_size
    return [mixture.draw(start + i) for i in range(batch_size)]


def corpus_from(mixture: Mixture, count: int) -> list[str]:
    """Conversation text of the first ``count`` stream positions (trains a fresh tokenizer)."""
    texts = []
    for position in range(count):
        for conversation in mixture.draw(position).conversations:
            for user, answer in conversation.turns:
                texts.extend([user, answer])
    return texts


class SamEmbeddingCache:
    """Image path -> frozen mask-backbone image embedding, each image encoded alone (so the
    bits do not depend on which images share a batch); least recently used dropped."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.entries: OrderedDict[str, ImageEmbedding] = OrderedDict()

    @torch.no_grad()
    def embeddings(self, model: LisaModel, samples: list[Sample], sam_pixels: torch.Tensor) -> ImageEmbedding:
        """The batch's images' embeddings; sam_pixels [B, 3, S, S] (already on the device)."""
        out = []
        for index, sample in enumerate(samples):
            key = str(sample.image)
            if key not in self.entries:
                self.entries[key] = model.mask_backbone.embed(sam_pixels[index : index + 1])[0]
            self.entries.move_to_end(key)
            out.append(self.entries[key])
        while len(self.entries) > self.capacity:
            self.entries.popitem(last=False)
        return ImageEmbedding.stack(out)
