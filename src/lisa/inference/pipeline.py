"""LisaPipeline: image(s) + query(ies) -> answer text and masks.

One request: load and normalise the images -> encode the ones not cached yet (VLM features and
the mask backbone's image embedding, ``LisaModel.encode_images``) -> prompt ids -> ``LisaModel``'s generated or
teacher-forced segmentation (answer ids, [SEG] states, masks at the original size) -> text,
boolean masks and scores. The model does the computing; the pipeline loads, caches, batches
and formats.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from lisa.data.image_io import ImageInput, load_image
from lisa.errors import LisaError
from lisa.model import static_decode
from lisa.model.folder import load_preprocessing
from lisa.model.lisa import ImageEmbedding, ImageEncoding, LisaModel, Segmentation
from lisa.model.prompting import PromptBuilder
from lisa.inference.arguments import check_call
from lisa.inference.queries import segment_query
from lisa.threads import set_threads
from lisa.inference.resolve import resolve_device, resolve_dtype, resolve_model_dir

Turns = list[tuple[str, str]]


@dataclass
class SegmentResult:
    text: str  # the assistant's answer; each mask's place is marked by [SEG]
    masks: np.ndarray  # [N, H, W] bool, one per [SEG] in the answer
    scores: np.ndarray  # [N] mean foreground probability of each mask
    timings: dict[str, float] = field(default_factory=dict)  # milliseconds, for the whole call
    # [N] bool: the presence head's verdict on each mask's object (False: judged absent, the mask
    # is empty); None when the model has no presence head (lisa.model.presence).
    present: np.ndarray | None = None


@dataclass
class _ImageEntry:
    features: torch.Tensor  # [N_img, D] projected VLM features
    sam_embedding: ImageEmbedding  # one image's, e.g. [C, h, w]
    resized_size: tuple[int, int]
    original_size: tuple[int, int]
    vlm_grid: torch.Tensor | None = None  # [3] patch grid (dynamic-resolution VLMs)


class LisaPipeline:
    def __init__(self, model: LisaModel, tokenizer, image_processor, cache_size: int = 16) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.builder = PromptBuilder(tokenizer, model.config)
        self.cache_size = cache_size
        self._cache: OrderedDict[str, _ImageEntry] = OrderedDict()
        self._cache_lock = threading.Lock()  # callers on several threads share one cache
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else self.builder.eos_id)
        vocab = model.vlm.get_output_embeddings().weight.shape[0]
        never = {model.config.image_token_id, tokenizer.bos_token_id, tokenizer.pad_token_id}
        never.discard(self.builder.eos_id)
        self.banned_ids = sorted(i for i in never if i is not None and 0 <= i < vocab)
        self.use_device_defaults()

    def use_device_defaults(self) -> None:
        """On CUDA: the static-cache, CUDA-graph decoder and a compiled mask-backbone image encoder
        (docs/gpu.md); elsewhere the eager decoder. Call again after moving the model."""
        self.decoder = static_decode.decoder_for(self.model.vlm)
        if self.decoder is not None:
            self.model.mask_backbone.compile_encoder()

    @classmethod
    def from_pretrained(
        cls,
        model: str | Path = "lisa-tiny",
        device: str = "auto",
        dtype: str | torch.dtype = "auto",
        vision_tower: str | Path | None = None,
        quantize: int | None = None,
        threads: int | str | None = "auto",
    ) -> "LisaPipeline":
        """``model``: a lisa-seg folder, "lisa-tiny" (the shipped default), a Hugging Face hub id
        ("org/name" or "org/name@revision", through the hub cache) or, with
        ``vision_tower``, a released LISA checkpoint folder. ``quantize`` 8 or 4: the LLM's
        decoder layers through bitsandbytes (CUDA only; lm_head and the seg head stay in ``dtype``).
        ``threads``: torch's CPU threads for this process: a count, "auto" (``lisa.threads``: the
        free cores, at most 4) or None to leave torch's setting alone."""
        if threads is not None:
            set_threads(threads)
        torch_device = resolve_device(device)
        torch_dtype = resolve_dtype(dtype, torch_device)
        if quantize is not None:
            from lisa.interop.quantize import check_quantization, quantize_language_model

            check_quantization(quantize, torch_device)  # fail before loading gigabytes
            pipe = cls.from_pretrained(model, "cpu", torch.float16 if torch_dtype == torch.float32 else torch_dtype, vision_tower)
            quantize_language_model(pipe.model, quantize, torch_device, pipe.model.dtype)
            pipe.use_device_defaults()
            return pipe
        if vision_tower is not None:
            from lisa.interop.official import load_official

            lisa_model, tokenizer, processor = load_official(
                resolve_model_dir(model), resolve_model_dir(vision_tower), torch_dtype, torch_device
            )
            return cls(lisa_model, tokenizer, processor)
        directory = resolve_model_dir(model)
        tokenizer, processor = load_preprocessing(directory)  # checks the whole folder first
        lisa_model = LisaModel.from_pretrained(directory, dtype=torch_dtype, device=torch_device)
        return cls(lisa_model, tokenizer, processor)

    # ---- public call -------------------------------------------------------------------
    def __call__(
        self,
        images: ImageInput | Sequence[ImageInput],
        queries: str | Sequence[str],
        history: Turns | Sequence[Turns] | None = None,
        answers: str | Sequence[str] | None = None,
        max_new_tokens: int = 64,
        raw: bool = False,
    ) -> SegmentResult | list[SegmentResult]:
        """Segment. A single image and query give one result; lists give a list (one image
        with several queries is broadcast). A bare phrase or question is wrapped in LISA's
        segmentation instruction (``lisa.inference.queries``); ``raw=True`` sends the text as
        typed (chat, VQA). ``answers`` switches to teacher forcing: the answer is given
        (e.g. "[SEG].") and masks come from its [SEG]s."""
        check_call(images, queries, history, answers, max_new_tokens)
        single = isinstance(queries, str)
        query_list = [queries] if single else list(queries)
        query_list = query_list if raw else [segment_query(q) for q in query_list]
        image_list = list(images) if isinstance(images, (list, tuple)) else [images]
        if len(image_list) == 1 and len(query_list) > 1:
            image_list = image_list * len(query_list)
        if len(image_list) != len(query_list):
            raise LisaError(f"{len(image_list)} images but {len(query_list)} queries")
        histories = _per_query(history, len(query_list), single)
        answer_list = None if answers is None else _as_list(answers, len(query_list))
        # inference_mode: less per-op bookkeeping than no_grad on the eager path. Not around the
        # static decoder, whose buffers outlive the call and are written in place.
        with torch.inference_mode(self.decoder is None):
            results = self._run(image_list, query_list, histories, answer_list, max_new_tokens)
        return results[0] if single else results

    def clear_cache(self) -> None:
        with self._cache_lock:
            self._cache.clear()

    # ---- steps -------------------------------------------------------------------------
    @torch.no_grad()
    def _run(self, images, queries, histories, answers, max_new_tokens) -> list[SegmentResult]:
        timings: dict[str, float] = {}
        start = time.perf_counter()
        arrays = [load_image(image) for image in images]
        keys = [_image_key(array) for array in arrays]
        timings["preprocess_ms"] = _ms(start)

        tick = time.perf_counter()
        unique = list(dict.fromkeys(keys))
        with self._cache_lock:  # encode, look up and reorder as one step: no eviction in between
            self._encode_missing(unique, {k: a for k, a in zip(keys, arrays)})
            entries = [self._cache[k] for k in unique]
            for key in unique:
                self._cache.move_to_end(key)
        image_index = torch.tensor([unique.index(k) for k in keys], device=self.model.device)
        grids = [e.vlm_grid for e in entries]
        encoded = ImageEncoding(
            [e.features for e in entries], ImageEmbedding.stack([e.sam_embedding for e in entries]),
            [e.resized_size for e in entries], [e.original_size for e in entries],
            None if grids[0] is None else torch.stack(grids),
        )
        timings["image_encode_ms"] = _ms(tick)

        tick = time.perf_counter()
        prompts = [  # the image span has as many tokens as the image's features
            self.builder.build(list(h) + [(q, None if answers is None else answers[i])],
                               image_tokens=entries[unique.index(keys[i])].features.shape[0])
            for i, (q, h) in enumerate(zip(queries, histories))
        ]
        input_ids, attention = _pad_left([p.input_ids for p in prompts], self.pad_id, self.model.device)
        timings["preprocess_ms"] = round(timings["preprocess_ms"] + _ms(tick), 3)

        tick = time.perf_counter()
        if answers is None:
            segmentation = self.model.generate_segmentation(
                input_ids, attention, encoded, image_index, max_new_tokens, self.builder.stop_ids, self.banned_ids,
                decoder=self.decoder,
            )
            texts = [self.builder.decode(tokens) for tokens in segmentation.tokens]
        else:
            segmentation = self.model.teacher_forced_segmentation(input_ids, attention, encoded, image_index)
            texts = list(answers)
        masks, scores = _to_numpy(segmentation)
        timings["mask_decode_ms"] = round(segmentation.mask_decode_ms, 3)
        timings["generate_ms"] = round(_ms(tick) - timings["mask_decode_ms"], 3)
        timings["total_ms"] = _ms(start)
        present = _present(segmentation, self.model)
        return [SegmentResult(t, m, s, dict(timings), p) for t, m, s, p in zip(texts, masks, scores, present)]

    def _encode_missing(self, keys: list[str], arrays: dict[str, np.ndarray]) -> None:
        missing = [k for k in keys if k not in self._cache]
        if not missing:
            return
        model = self.model
        views = [model.mask_backbone.view(arrays[k]) for k in missing]
        vlm_images = model.adapter.image_inputs([arrays[k] for k in missing], self.image_processor)
        encoded = model.encode_images(
            vlm_images.pixels, torch.stack([v.pixels for v in views]),
            [v.resized_size for v in views], [v.original_size for v in views], vlm_images.grids,
        )
        for i, key in enumerate(missing):
            grid = None if encoded.vlm_grids is None else encoded.vlm_grids[i]
            self._cache[key] = _ImageEntry(
                encoded.features[i], encoded.sam_embeddings[i], views[i].resized_size, views[i].original_size, grid
            )
        for key in keys:  # the batch's images newest, so that trimming evicts only other ones
            self._cache.move_to_end(key)
        while len(self._cache) > max(self.cache_size, len(keys)):
            self._cache.popitem(last=False)


def _to_numpy(segmentation: Segmentation) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per conversation: boolean masks [n, H, W] (logit > 0) and scores [n]."""
    masks = [(logits > 0).cpu().numpy() for logits in segmentation.mask_logits]
    scores = [score.cpu().numpy().astype(np.float32) for score in segmentation.scores]
    return masks, scores


def _present(segmentation: Segmentation, model: LisaModel) -> list[np.ndarray | None]:
    """Per conversation: which masks the presence head kept ([n] bool), or None without one."""
    if segmentation.presence is None or model.presence_head is None:
        return [None] * len(segmentation.scores)
    return [model.presence_head.keeps(log_odds).cpu().numpy() for log_odds in segmentation.presence]


def _pad_left(ids: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    length = max(len(row) for row in ids)
    input_ids = torch.full((len(ids), length), pad_id, dtype=torch.long)
    attention = torch.zeros((len(ids), length), dtype=torch.long)
    for row, tokens in enumerate(ids):
        input_ids[row, length - len(tokens):] = torch.tensor(tokens)
        attention[row, length - len(tokens):] = 1
    return input_ids.to(device), attention.to(device)


def _image_key(array: np.ndarray) -> str:
    digest = hashlib.blake2b(array.tobytes(), digest_size=16)
    digest.update(str(array.shape).encode())
    return digest.hexdigest()


def _as_list(value, count: int) -> list:
    values = [value] if isinstance(value, str) else list(value)
    if len(values) == 1 and count > 1:
        values = values * count
    if len(values) != count:
        raise LisaError(f"expected {count} answers, got {len(values)}")
    return values


def _per_query(history, count: int, single: bool) -> list[Turns]:
    if history is None:
        return [[] for _ in range(count)]
    if single:
        return [list(history)]
    histories = list(history)
    if len(histories) != count:
        raise LisaError(f"expected one history per query ({count}), got {len(histories)}")
    return [list(h) for h in histories]


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 3)
