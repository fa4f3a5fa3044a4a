"""Periodic validation: gIoU / cIoU on the configured val set, via the inference pipeline
(the same preprocessing and decoding as ``lisa eval``)."""

from __future__ import annotations

from pathlib import Path

import torch

from lisa.train.config import ValSection


@torch.no_grad()
def run_validation(val: ValSection, model, tokenizer, processor) -> dict[str, float]:
    from lisa.eval.evaluate import evaluate, load_eval_dataset, pipeline_predictor
    from lisa.inference.pipeline import LisaPipeline

    items = load_eval_dataset(val.dataset, Path(val.dir), val.split, names=val.names or None)
    if val.limit is not None:
        items = [items[i] for i in range(min(val.limit, len(items)))]
    pipe = LisaPipeline(model, tokenizer, processor)
    results, _ = evaluate(items, pipeline_predictor(pipe, val.teacher_forced, 64), val.batch_size, progress=False)
    return {"giou": results.overall.giou, "ciou": results.overall.ciou}
