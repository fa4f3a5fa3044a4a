"""Periodic validation: gIoU / cIoU on the configured val set, via the inference pipeline
(the same preprocessing and decoding as ``lisa eval``)."""

from __future__ import annotations

from pathlib import Path

import torch

from lisa.errors import LisaError
from lisa.train.config import ValSection


def load_val_items(val: ValSection) -> list:
    """The val set's items (the first ``limit``); the trainer calls this at start, so a wrong
    folder, split or file name fails before step 1, not at the first validation."""
    from lisa.eval.evaluate import load_eval_dataset

    items = load_eval_dataset(val.dataset, Path(val.dir), val.split, names=val.names or None)
    if val.limit is not None:
        items = [items[i] for i in range(min(val.limit, len(items)))]
    if not items:
        raise LisaError(f"val: {val.dir} ({val.dataset}, split {val.split}) holds no items to validate on")
    return items


@torch.no_grad()
def run_validation(val: ValSection, model, tokenizer, processor, items: list | None = None) -> dict[str, float]:
    from lisa.eval.evaluate import evaluate, pipeline_predictor
    from lisa.inference.pipeline import LisaPipeline

    items = load_val_items(val) if items is None else items
    pipe = LisaPipeline(model, tokenizer, processor)
    results, _ = evaluate(items, pipeline_predictor(pipe, val.teacher_forced, 64), val.batch_size, progress=False)
    return {"giou": results.overall.giou, "ciou": results.overall.ciou}
