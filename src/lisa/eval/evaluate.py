"""Run an evaluation: dataset items -> predicted masks (a model or a folder of PNGs) -> scores.

Predictors take a batch of EvalItems and return one [H, W] bool mask per item (the union of the
masks of every ``[SEG]`` in the answer; empty when the answer has none) plus the answer text.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from lisa.data.names import EVAL_DATASETS, REFER_DATASETS
from lisa.data.sample import EvalItem
from lisa.errors import LisaError
from lisa.eval.metrics import score_mask
from lisa.eval.report import ItemScore, Results

TEACHER_FORCED_ANSWER = "[SEG]."

Prediction = tuple[np.ndarray, str | None]  # ([H, W] bool mask, answer text or None)
Predictor = Callable[[list[EvalItem]], list[Prediction]]


def load_eval_dataset(name: str, data_dir: Path, split: str, all_texts: bool = False,
                      split_by: str | None = None, names: list[str] | None = None,
                      allow_outside_paths: bool = False) -> Sequence[EvalItem]:
    """The evaluation items of ``name`` (reasonseg, refcoco..., grefcoco, jsonl) and ``split``;
    ``names`` keeps only those JSONL files (e.g. ["referring"])."""
    if names and name != "jsonl":
        raise LisaError("--names selects JSONL files; use it with --dataset jsonl")
    if name == "reasonseg":
        from lisa.data.reason_seg import ReasonSegEval

        return ReasonSegEval(data_dir, split, all_texts=all_texts)
    if name in REFER_DATASETS:
        from lisa.data.refer_seg import ReferEval

        return ReferEval(data_dir, name, split, split_by)
    if name == "jsonl":
        from lisa.data.jsonl import JsonlEval

        return JsonlEval(data_dir, split, names, allow_outside_paths)
    raise LisaError(f"unknown evaluation dataset {name!r}; choose from {', '.join(EVAL_DATASETS)}")


def pred_dir_predictor(pred_dir: Path, dataset: Sequence[EvalItem] | None = None) -> Predictor:
    """Read predicted masks from a folder, named as ``lisa.eval.predictions`` says (one file per
    query, or per single-query image of ``dataset``)."""
    from lisa.eval.predictions import PredDirPredictor

    return PredDirPredictor(pred_dir, dataset)


def saving_predictor(predict: Predictor, folder: Path) -> Predictor:
    """``predict``, also writing every predicted mask into ``folder`` by the per-query naming rule."""
    from lisa.eval.predictions import save_prediction

    def predict_and_save(items: list[EvalItem]) -> list[Prediction]:
        predictions = predict(items)
        for item, (mask, _) in zip(items, predictions):
            save_prediction(folder, item, mask)
        return predictions

    return predict_and_save


def union_mask(masks: np.ndarray, height: int, width: int) -> np.ndarray:
    """[N, H, W] bool -> [H, W] bool union (all False when N == 0)."""
    if masks is None or len(masks) == 0:
        return np.zeros((height, width), dtype=bool)
    return np.asarray(masks).astype(bool).any(axis=0)


def pipeline_predictor(pipe: Any, teacher_forced: bool, max_new_tokens: int) -> Predictor:
    """Batched calls to a ``LisaPipeline``; teacher-forced passes the answer "[SEG].". The
    items' queries already carry the evaluation wording, so they are sent raw."""

    def predict(items: list[EvalItem]) -> list[Prediction]:
        images = [item.image for item in items]
        queries = [item.query for item in items]
        if teacher_forced:
            results = pipe(images, queries, answers=[TEACHER_FORCED_ANSWER] * len(items), raw=True)
        else:
            results = pipe(images, queries, max_new_tokens=max_new_tokens, raw=True)
        return [(union_mask(r.masks, *item.target.shape), r.text) for r, item in zip(results, items)]

    return predict


@dataclass
class _Kept:
    """A kept case; ordered so that the heap's top is the *best* kept case (evicted first)."""

    key: tuple[float, str]  # (iou, item_id)
    item: EvalItem
    pred: np.ndarray

    def __lt__(self, other: "_Kept") -> bool:
        return self.key > other.key


@dataclass
class WorstKeeper:
    """The ``k`` lowest-(IoU, id) items and their predictions, for visualisation."""

    k: int
    heap: list[_Kept] = field(default_factory=list)

    def offer(self, score: ItemScore, item: EvalItem, pred: np.ndarray) -> None:
        self._keep(_Kept((score.iou, score.item_id), item, pred))

    def absorb(self, other: "WorstKeeper") -> None:
        """Offer every case ``other`` kept (merging the keepers of several shards)."""
        for kept in other.heap:
            self._keep(kept)

    def _keep(self, kept: _Kept) -> None:
        if self.k <= 0:
            return
        if len(self.heap) < self.k:
            heapq.heappush(self.heap, kept)
        elif kept.key < self.heap[0].key:
            heapq.heapreplace(self.heap, kept)

    def cases(self) -> list[tuple[EvalItem, np.ndarray, float]]:
        """Kept cases, worst first: (item, prediction [H, W] bool, iou)."""
        return [(k.item, k.pred, k.key[0]) for k in sorted(self.heap, key=lambda k: k.key)]


def batches(items: Sequence[EvalItem], size: int) -> Iterable[list[EvalItem]]:
    """Consecutive batches of ``size`` items (the items are built lazily)."""
    for start in range(0, len(items), size):
        yield [items[i] for i in range(start, min(start + size, len(items)))]


def evaluate(items: Sequence[EvalItem], predict: Predictor, batch_size: int = 1, keep_worst: int = 0,
             progress: bool = True) -> tuple[Results, WorstKeeper]:
    """Score every item; returns the results and the kept worst cases."""
    from tqdm import tqdm

    results, keeper = Results(), WorstKeeper(keep_worst)
    bar = tqdm(total=len(items), desc="eval", unit="query", disable=not progress)
    try:
        for batch in batches(items, max(1, batch_size)):
            for item, (pred, text) in zip(batch, predict(batch)):
                mask_score = score_mask(pred, item.target)
                valid = item.target != 255
                score = ItemScore(item.item_id, mask_score.iou, mask_score.intersection, mask_score.union,
                                  item.is_sentence, str(item.image), item.query, text,
                                  int((item.target[valid] == 1).sum()), int(pred[valid].sum()))
                results.add(score)
                keeper.offer(score, item, pred)
            bar.update(len(batch))
            bar.set_postfix(giou=f"{results.overall.giou:.4f}", ciou=f"{results.overall.ciou:.4f}")
    finally:
        bar.close()  # ends the bar's line, so an error message starts on a line of its own
    return results, keeper
