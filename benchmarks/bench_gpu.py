"""LISA-7B / 13B on one GPU: the naive eager path, an official-style loop and ours, side by side.

    python benchmarks/bench_gpu.py                         # 7B then 13B, every section (~10 min on an H200)
    python benchmarks/bench_gpu.py --sizes 7b --paths ours --batches 1
    python benchmarks/bench_gpu.py --tiny                  # tiny shapes on the CPU: exercises every code path

Random weights at the released shapes, built from configs (no download): LLaMA-2-7B / 13B +
CLIP ViT-L/14 at 224 (256 image tokens, linear projector, as LISA-v1) + SAM ViT-H at 1024.
A short query is a 317-token prompt answered with 6 new tokens ("Sure, [SEG]." is about 6),
with one mask. Every token but [SEG] is banned so that the random model's answer is all
[SEG]s: the work per token is the real one and each query really decodes a mask.

Paths
- naive: lisa-seg's eager loop (``vlm.greedy_generate``: DynamicCache, host read per token),
  eager SAM encoder;
- official: the released code's decode, rewritten here: every new token re-runs CLIP and the
  whole LLM over prompt + answer (no KV cache), as ``LISA.py:evaluate`` does; batch 1 only
  (the released code cannot batch);
- ours: ``StaticDecoder`` (static KV cache, CUDA-graph step, done flags read every 4 steps)
  and the compiled SAM encoder, the pipeline's CUDA default.

Figures (one JSON line each): ms per query at batch 1 (median of --runs after warm-up; new
image each query, and with the image embeddings cached), queries/s at each --batches size,
time to the first [SEG]'s mask (a query answered up to its 3rd token, "Sure , [SEG]"), peak
GPU memory, warm-up (compile + capture) seconds, and the ratio to the physical limit: weight
bytes / HBM bandwidth per decode step + (prefill + encoder FLOPs, counted) / peak FLOP/s. The
GPU's figures come from PEAKS (spec sheets, dense bf16) unless --peak-tflops / --hbm-tbps are
given; the measured copy bandwidth and matmul rate are printed beside them.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import CLIPVisionConfig, SamConfig, SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig

from lisa.interop.official import IMAGE_PLACEHOLDER_ID, llava_v1_config
from lisa.model import sam as sam_ops
from lisa.model import vlm as vlm_ops
from lisa.model.config import LisaConfig, count_image_tokens
from lisa.model.lisa import LisaModel, default_dtype, keep_rope_float32
from lisa.model.static_decode import StaticDecoder, compile_image_encoder
from lisa.model.vlms import VlmImages, adapter_of

# Dense bf16 tensor FLOP/s and HBM bytes/s from the vendors' spec sheets; matched in order
# against torch.cuda.get_device_name() (most specific first).
PEAKS: list[tuple[str, float, float]] = [
    ("H200", 989e12, 4.8e12),
    ("H100 NVL", 835e12, 3.9e12),
    ("H100 PCIe", 756e12, 2.0e12),
    ("H100", 989e12, 3.35e12),
    ("GH200", 989e12, 4.0e12),
    ("A100-SXM4-80GB", 312e12, 2.039e12),
    ("A100 80GB PCIe", 312e12, 1.935e12),
    ("A100", 312e12, 1.555e12),
    ("L40S", 362e12, 0.864e12),
]

# LLaMA shapes of the released LISA-v1 models (vocabulary with [SEG], <im_start>, <im_end>, pad).
LLAMA = {
    "7b": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32),
    "13b": dict(hidden_size=5120, intermediate_size=13824, num_hidden_layers=40, num_attention_heads=40),
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4),
}
PROMPT_TOKENS = 317  # the short query: system prompt + 256 image tokens + question
NEW_TOKENS = 6
SEG_AT = 3  # "Sure" "," "[SEG]": the mask can start after the 3rd token


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="7b,13b", help="comma list of 7b, 13b")
    parser.add_argument("--paths", default="naive,official,ours", help="comma list of naive, official, ours")
    parser.add_argument("--batches", default="1,8,32", help="batch sizes for queries/s (1 is always measured)")
    parser.add_argument("--runs", type=int, default=10, help="timed queries at batch 1 (median)")
    parser.add_argument("--batch-runs", type=int, default=3, help="timed batches per batch size")
    parser.add_argument("--quant", default="8,4", help="bit widths for the quantised section when bitsandbytes imports; '' for none")
    parser.add_argument("--compile-step", action="store_true", help="also torch.compile the decode step before capture")
    parser.add_argument("--peak-tflops", type=float, help="override the GPU's dense bf16 TFLOP/s")
    parser.add_argument("--hbm-tbps", type=float, help="override the GPU's memory bandwidth, TB/s")
    parser.add_argument("--budget-s", type=float, default=540.0, help="skip sections once this much time has passed")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (CPU ok): checks the code paths, not speed")
    parser.add_argument("--device", default=None, help="default: cuda, or cpu with --tiny and no GPU")
    return parser.parse_args(argv)


# ---- model ----------------------------------------------------------------------------
def lisa_config(size: str) -> LisaConfig:
    tiny = size == "tiny"
    llama = dict(LLAMA[size], vocab_size=32004 if not tiny else 512, max_position_embeddings=4096 if not tiny else 512,
                 rms_norm_eps=1e-5)
    vision = CLIPVisionConfig(  # CLIP ViT-L/14 at 224, or a tiny one with the same token count
        hidden_size=1024 if not tiny else 32, intermediate_size=4096 if not tiny else 64,
        num_hidden_layers=24 if not tiny else 2, num_attention_heads=16 if not tiny else 2,
        image_size=224 if not tiny else 64, patch_size=14 if not tiny else 4, projection_dim=768 if not tiny else 32,
    )
    sam = SamConfig(  # SAM ViT-H, or a tiny one
        vision_config=SamVisionConfig(
            hidden_size=1280 if not tiny else 32, num_hidden_layers=32 if not tiny else 2,
            num_attention_heads=16 if not tiny else 2, global_attn_indexes=[7, 15, 23, 31] if not tiny else [1],
            image_size=1024 if not tiny else 64, window_size=14 if not tiny else 2,
            output_channels=256 if not tiny else 32, num_pos_feats=128 if not tiny else 16,
        ),
        prompt_encoder_config=SamPromptEncoderConfig(
            hidden_size=256 if not tiny else 32, image_size=1024 if not tiny else 64, mask_input_channels=16,
        ),
        mask_decoder_config=SamMaskDecoderConfig(
            hidden_size=256 if not tiny else 32, mlp_dim=2048 if not tiny else 64,
            num_attention_heads=8 if not tiny else 2, iou_head_hidden_dim=256 if not tiny else 32,
        ),
    )
    vlm = llava_v1_config(llama, vision)
    return LisaConfig(
        vlm=vlm.to_dict(), sam=sam.to_dict(), seg_token_id=llama["vocab_size"] - 4,
        image_token_id=IMAGE_PLACEHOLDER_ID, num_image_tokens=count_image_tokens(vlm), projector="linear",
        out_dim=sam.prompt_encoder_config.hidden_size,
    )


@torch.no_grad()
def build(size: str, device: torch.device, dtype: torch.dtype) -> LisaModel:
    """Allocated directly on ``device`` in ``dtype`` without HF's init, then filled at random
    (N(0, 0.02) matrices, unit norms, zero biases): seconds for a 13B model on a GPU."""
    with torch.device(device), default_dtype(dtype):
        model = LisaModel(lisa_config(size), init_weights=False)
    for name, parameter in model.named_parameters():
        if parameter.ndim >= 2:
            parameter.normal_(0.0, 0.02)
        else:
            parameter.fill_(1.0 if name.endswith("weight") else 0.0)
    return keep_rope_float32(model).eval()


@dataclass
class Batch:
    vlm_pixels: torch.Tensor  # [B, 3, 224, 224]
    sam_pixels: torch.Tensor  # [B, 3, 1024, 1024]
    input_ids: torch.Tensor  # [B, L] left-padded: rows differ by up to 3 tokens
    attention_mask: torch.Tensor  # [B, L]


def make_batch(model: LisaModel, rows: int, seed: int) -> Batch:
    config, device = model.config, model.device
    generator = torch.Generator().manual_seed(seed)
    vision = config.vlm["vision_config"]["image_size"]
    sam = config.sam_image_size
    image_tokens = config.num_image_tokens
    prompt = max(PROMPT_TOKENS, image_tokens + 8)
    vocab = config.vlm["text_config"]["vocab_size"] - 4
    ids = torch.full((rows, prompt), 0, dtype=torch.long)
    mask = torch.zeros(rows, prompt, dtype=torch.long)
    for row in range(rows):
        length = prompt - row % 4
        text = torch.randint(3, vocab, (length - image_tokens,), generator=generator)
        split = min(40, len(text) // 2)
        ids[row, prompt - length:] = torch.cat([text[:split], torch.full((image_tokens,), config.image_token_id), text[split:]])
        mask[row, prompt - length:] = 1
    return Batch(
        torch.randn(rows, 3, vision, vision, generator=generator).to(device, model.dtype),
        torch.randn(rows, 3, sam, sam, generator=generator).to(device, model.dtype),
        ids.to(device), mask.to(device),
    )


def image_features(vlm: torch.nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Projected image features [B, N_img, D], through the VLM's adapter."""
    return torch.stack(adapter_of(vlm).image_features(vlm, VlmImages(pixels)))


# ---- the three paths ------------------------------------------------------------------
@dataclass
class Subject:
    """A model under test and what every path needs besides it."""

    model: LisaModel
    banned: list[int]  # every id but [SEG]
    decoder: StaticDecoder | None = None  # ours

    @classmethod
    def of(cls, model: LisaModel) -> "Subject":
        seg = model.config.seg_token_id
        return cls(model, [i for i in range(model.vlm.lm_head.weight.shape[0]) if i != seg])

    def embed(self, batch: Batch, features: torch.Tensor) -> torch.Tensor:
        index = torch.arange(batch.input_ids.shape[0], device=batch.input_ids.device)
        return vlm_ops.embed_with_images(self.model.vlm, batch.input_ids, features, index, self.model.config.image_token_id)


Generate = Callable[[Subject, Batch, "torch.Tensor | None", int], list[torch.Tensor]]


def eager_generate(subject: Subject, batch: Batch, features: torch.Tensor, new_tokens: int) -> list[torch.Tensor]:
    model = subject.model
    generation = vlm_ops.greedy_generate(
        model.vlm, subject.embed(batch, features), batch.attention_mask, new_tokens, [], model.config.seg_token_id, subject.banned
    )
    return generation.seg_hidden


def official_generate(subject: Subject, batch: Batch, features: None, new_tokens: int) -> list[torch.Tensor]:
    """No KV cache: each token re-encodes the image with CLIP and re-runs the LLM over the whole
    sequence; the [SEG] states are read from the last step's full hidden tensor."""
    model = subject.model
    config, vlm = model.config, model.vlm
    ids, mask = batch.input_ids, batch.attention_mask
    rows = ids.shape[0]
    index = torch.arange(rows, device=ids.device)
    ban = vlm_ops.banned_bias(vlm.lm_head.weight.shape[0], subject.banned, ids.device)
    for _ in range(new_tokens):
        features = image_features(vlm, batch.vlm_pixels)
        embeds = vlm_ops.embed_with_images(vlm, ids, features, index, config.image_token_id)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        hidden = vlm_ops.language_hidden(vlm, embeds, mask, positions)
        next_ids = (vlm.lm_head(hidden[:, -1]).float() + ban).argmax(-1)
        ids = torch.cat([ids, next_ids[:, None]], 1)
        mask = torch.cat([mask, mask.new_ones(rows, 1)], 1)
    is_seg = ids[:, -new_tokens:] == config.seg_token_id
    states = hidden[:, -new_tokens:]
    return [states[row][is_seg[row]] for row in range(rows)]


def static_generate(subject: Subject, batch: Batch, features: torch.Tensor, new_tokens: int) -> list[torch.Tensor]:
    return subject.decoder.generate(
        subject.embed(batch, features), batch.attention_mask, new_tokens, [], subject.model.config.seg_token_id, subject.banned
    ).seg_hidden


@torch.no_grad()
def query(subject: Subject, batch: Batch, generate: Generate, new_tokens: int, cached=None) -> torch.Tensor:
    """Encoders (unless ``cached``) -> answer -> one mask per row from its first [SEG]."""
    model = subject.model
    if cached is None:
        rerun_clip = generate is official_generate  # it encodes with CLIP at every token itself
        features = None if rerun_clip else image_features(model.vlm, batch.vlm_pixels)
        sam_embeddings = sam_ops.encode_images(model.sam, batch.sam_pixels)
    else:
        features, sam_embeddings = cached
    seg_hidden = generate(subject, batch, features, new_tokens)
    first = torch.stack([states[0] for states in seg_hidden])
    rows = torch.arange(first.shape[0], device=first.device)
    low_res, _ = sam_ops.decode_masks(model.sam, sam_embeddings, model.seg_head(first.to(model.dtype)), rows)
    return low_res


# ---- measuring ------------------------------------------------------------------------
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_ms(device: torch.device, fn: Callable[[], object]) -> float:
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return (time.perf_counter() - start) * 1000.0


def peak_figures(device: torch.device, args: argparse.Namespace) -> dict:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    flops, bandwidth, source = None, None, "none"
    for key, table_flops, table_bandwidth in PEAKS:
        if key in name:
            flops, bandwidth, source = table_flops, table_bandwidth, f"table:{key}"
            break
    if args.peak_tflops:
        flops, source = args.peak_tflops * 1e12, "override"
    if args.hbm_tbps:
        bandwidth, source = args.hbm_tbps * 1e12, "override"
    figures = {"device": name, "peak_flops": flops, "hbm_bytes_per_s": bandwidth, "peaks_from": source}
    if device.type == "cuda":  # what this GPU actually reaches, for comparison
        copy = torch.empty(1 << 30, dtype=torch.uint8, device=device)
        target = torch.empty_like(copy)
        target.copy_(copy)
        seconds = timed_ms(device, lambda: [target.copy_(copy) for _ in range(10)]) / 1000
        figures["measured_copy_bytes_per_s"] = 2 * copy.numel() * 10 / seconds
        a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
        a @ a
        seconds = timed_ms(device, lambda: [a @ a for _ in range(10)]) / 1000
        figures["measured_matmul_flops"] = 2 * 8192**3 * 10 / seconds
        del copy, target, a
    return figures


def count_flops(subject: Subject, batch: Batch) -> dict[str, float]:
    """FLOPs of one batch-1 query's compute-bound parts: the encoders and the prefill."""
    one = Batch(batch.vlm_pixels[:1], batch.sam_pixels[:1], batch.input_ids[:1], batch.attention_mask[:1])
    model, counts = subject.model, {}
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            features = image_features(model.vlm, one.vlm_pixels)
        counts["clip_flops"] = counter.get_total_flops()
        with FlopCounterMode(display=False) as counter:
            sam_ops.encode_images(model.sam, one.sam_pixels)
        counts["sam_encoder_flops"] = counter.get_total_flops()
        embeds = subject.embed(one, features)
        with FlopCounterMode(display=False) as counter:
            vlm_ops.language_hidden(model.vlm, embeds, one.attention_mask)
        counts["prefill_flops"] = counter.get_total_flops()
    return counts


def decode_weight_bytes(model: LisaModel) -> int:
    """Bytes one decode step must read: the LLM's decoder layers, final norm and lm_head (the
    embedding table is gathered, not read whole)."""
    language = model.vlm.model.language_model
    tensors = list(language.layers.parameters()) + list(language.norm.parameters()) + list(model.vlm.lm_head.parameters())
    return sum(t.numel() * t.element_size() for t in tensors)


class Report:
    def __init__(self, common: dict) -> None:
        self.common = common
        self.rows: list[dict] = []

    def emit(self, **figure) -> None:
        line = {**self.common, **figure}
        self.rows.append(line)
        print(json.dumps(line), flush=True)

    def table(self) -> None:
        """The batch-1 figures of every path side by side (after the JSON lines)."""
        keys = ("size", "precision", "path")
        groups: dict[tuple, dict] = {}
        for row in self.rows:
            if "path" in row and "value" in row:
                groups.setdefault(tuple(row.get(k) for k in keys), {})[(row["figure"], row.get("batch"))] = row["value"]
        columns = [("ms_per_query", 1), ("ms_per_query_cached", 1), ("ms_to_first_seg", 1), ("ratio_to_limit", 1),
                   ("queries_per_s", 8), ("queries_per_s", 32), ("queries_per_s_cached", 32), ("peak_gb", None)]
        print("# " + " | ".join(["size", "precision", "path"] + [f"{f}@{b}" if b else f for f, b in columns]))
        for group, values in groups.items():
            cells = [str(g) for g in group] + [_cell(values.get(column)) for column in columns]
            print("# " + " | ".join(cells))


def _cell(value) -> str:
    return "-" if value is None else f"{value:.3g}" if isinstance(value, float) else str(value)


def measure_path(subject: Subject, path: str, generate: Generate, args, report: Report, limit: dict, tags: dict) -> None:
    model = subject.model
    device = model.device
    batch_one = make_batch(model, 1, seed=0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    for seed in (1, 2):  # warm-up: compilation, graph capture (both answer lengths), allocator
        query(subject, make_batch(model, 1, seed), generate, NEW_TOKENS)
        query(subject, make_batch(model, 1, seed), generate, SEG_AT)
    synchronize(device)
    report.emit(**tags, path=path, figure="warmup_s", batch=1, value=round(time.perf_counter() - start, 2), unit="s")
    batches = [make_batch(model, 1, seed=10 + run) for run in range(args.runs)]
    new_image = [timed_ms(device, lambda b=b: query(subject, b, generate, NEW_TOKENS)) for b in batches]
    cached = (image_features(model.vlm, batch_one.vlm_pixels), sam_ops.encode_images(model.sam, batch_one.sam_pixels))
    with_cache = [timed_ms(device, lambda: query(subject, batch_one, generate, NEW_TOKENS, cached)) for _ in range(args.runs)]
    first_seg = [timed_ms(device, lambda b=b: query(subject, b, generate, SEG_AT)) for b in batches]
    ms = statistics.median(new_image)
    report.emit(**tags, path=path, figure="ms_per_query", batch=1, value=round(ms, 2), unit="ms",
                runs=args.runs, min=round(min(new_image), 2), new_tokens=NEW_TOKENS)
    report.emit(**tags, path=path, figure="ms_per_query_cached", batch=1, value=round(statistics.median(with_cache), 2), unit="ms")
    report.emit(**tags, path=path, figure="ms_to_first_seg", batch=1, value=round(statistics.median(first_seg), 2), unit="ms")
    if limit.get("limit_ms"):
        report.emit(**tags, path=path, figure="ratio_to_limit", batch=1, value=round(ms / limit["limit_ms"], 2),
                    unit="x", limit_ms=round(limit["limit_ms"], 2))
    sizes = [int(b) for b in args.batches.split(",") if b.strip() and int(b) > 1]
    for rows in sizes if path != "official" else []:
        if time.perf_counter() - args.started > args.budget_s:
            report.emit(**tags, path=path, figure="queries_per_s", batch=rows, skipped="time budget")
            continue
        batch = make_batch(model, rows, seed=100 + rows)
        query(subject, batch, generate, NEW_TOKENS)  # warm-up at this shape (capture / recompile)
        times = [timed_ms(device, lambda: query(subject, batch, generate, NEW_TOKENS)) for _ in range(args.batch_runs)]
        report.emit(**tags, path=path, figure="queries_per_s", batch=rows,
                    value=round(rows / (statistics.median(times) / 1000), 1), unit="1/s")
        cached = (image_features(model.vlm, batch.vlm_pixels), sam_ops.encode_images(model.sam, batch.sam_pixels))
        times = [timed_ms(device, lambda: query(subject, batch, generate, NEW_TOKENS, cached)) for _ in range(args.batch_runs)]
        report.emit(**tags, path=path, figure="queries_per_s_cached", batch=rows,
                    value=round(rows / (statistics.median(times) / 1000), 1), unit="1/s")
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        report.emit(**tags, path=path, figure="peak_gb", batch=None, value=round(peak, 2), unit="GiB")


def physical_limit(subject: Subject, peaks: dict, report: Report, tags: dict) -> dict:
    flops = count_flops(subject, make_batch(subject.model, 1, seed=0))
    weight_bytes = decode_weight_bytes(subject.model)
    figures = {**flops, "decode_weight_bytes": weight_bytes}
    if peaks["peak_flops"] and peaks["hbm_bytes_per_s"]:
        decode_ms = NEW_TOKENS * weight_bytes / peaks["hbm_bytes_per_s"] * 1000
        compute_ms = sum(flops.values()) / peaks["peak_flops"] * 1000
        figures.update(limit_ms=decode_ms + compute_ms, limit_decode_ms=decode_ms, limit_compute_ms=compute_ms)
    report.emit(**tags, figure="physical_limit", value=figures.get("limit_ms"), unit="ms",
                **{k: v for k, v in figures.items() if k != "limit_ms"})
    return figures


@torch.no_grad()
def agreement(subject: Subject, report: Report, tags: dict) -> None:
    """Ours against the eager loop on this device, at these shapes: the ids of free (unbanned)
    answers, and the [SEG] states of forced ones. Random weights have near-ties, so bf16 may
    flip a few ids; a large disagreement means a broken decoder."""
    model, batch = subject.model, make_batch(subject.model, 4, seed=7)
    features = image_features(model.vlm, batch.vlm_pixels)
    embeds = subject.embed(batch, features)
    seg = model.config.seg_token_id
    eager = vlm_ops.greedy_generate(model.vlm, embeds, batch.attention_mask, 12, [], seg, [])
    ours = subject.decoder.generate(embeds, batch.attention_mask, 12, [], seg, [])
    pairs = [(a, b) for row_a, row_b in zip(eager.tokens, ours.tokens) for a, b in zip(row_a, row_b)]
    same = sum(a == b for a, b in pairs) / max(1, len(pairs))
    forced_eager = vlm_ops.greedy_generate(model.vlm, embeds, batch.attention_mask, NEW_TOKENS, [], seg, subject.banned)
    forced_ours = subject.decoder.generate(embeds, batch.attention_mask, NEW_TOKENS, [], seg, subject.banned)
    difference = max(float((a.float() - b.float()).abs().max()) for a, b in zip(forced_eager.seg_hidden, forced_ours.seg_hidden))
    scale = max(float(a.float().abs().max()) for a in forced_eager.seg_hidden)
    report.emit(**tags, path="ours", figure="agreement_with_eager", value=round(same, 4), unit="fraction of ids",
                seg_state_max_abs_diff=difference, seg_state_max_abs=scale, first_row_eager=eager.tokens[0],
                first_row_ours=ours.tokens[0])


def run_size(size: str, args, device: torch.device, dtype: torch.dtype, peaks: dict, report: Report) -> None:
    tags = {"size": size, "precision": str(dtype).replace("torch.", "")}
    start = time.perf_counter()
    subject = Subject.of(build(size, device, dtype))
    synchronize(device)
    report.emit(**tags, figure="build_s", value=round(time.perf_counter() - start, 2), unit="s")
    limit = physical_limit(subject, peaks, report, tags)
    paths = {"naive": eager_generate, "official": official_generate, "ours": static_generate}
    for path in [p.strip() for p in args.paths.split(",") if p.strip()]:
        if time.perf_counter() - args.started > args.budget_s:
            report.emit(**tags, path=path, figure="ms_per_query", skipped="time budget")
            continue
        if path == "ours":  # the pipeline's CUDA defaults, set last: compiling is in place
            subject.decoder = StaticDecoder(subject.model.vlm, compile_step=args.compile_step)
            agreement(subject, report, tags)
            if device.type == "cuda":
                compile_image_encoder(subject.model.sam)
        measure_path(subject, path, paths[path], args, report, limit, tags)
    dtype = subject.model.dtype
    del subject
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    quantized_sections(size, dtype, args, device, report, tags)


def quantized_sections(size: str, dtype: torch.dtype, args, device: torch.device, report: Report, tags: dict) -> None:
    bits_list = [int(b) for b in args.quant.split(",") if b.strip()]
    if not bits_list:
        return
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        report.emit(**tags, figure="quantized", skipped="bitsandbytes is not importable")
        return
    if device.type != "cuda":
        report.emit(**tags, figure="quantized", skipped="bitsandbytes needs CUDA")
        return
    from lisa.interop.quantize import quantize_language_model
    from lisa.model.static_decode import graphs_capturable

    for bits in bits_list:
        if time.perf_counter() - args.started > args.budget_s:
            report.emit(**tags, figure="quantized", bits=bits, skipped="time budget")
            continue
        model = build(size, device, dtype)
        model.vlm.model.language_model.layers.to("cpu")  # the move back to the GPU quantises
        quantize_language_model(model, bits, device, dtype)
        subject = Subject.of(model)
        subject.decoder = StaticDecoder(model.vlm, use_graphs=graphs_capturable(model.vlm))
        weight = decode_weight_bytes(model)
        report.emit(**tags, figure="quantized_weight_bytes", bits=bits, value=weight, unit="B")
        quant_args = argparse.Namespace(**{**vars(args), "batches": "8"})
        measure_path(subject, "ours", static_generate, quant_args, report, {},
                     {**tags, "precision": f"int{bits}", "sam_encoder": "eager"})
        del model, subject
        gc.collect()
        torch.cuda.empty_cache()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.started = time.perf_counter()
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    if device.type != "cuda" and not args.tiny:
        sys.exit("bench_gpu.py needs a CUDA GPU for the real shapes; use --tiny to check the code paths on the CPU")
    if args.tiny:
        args.sizes = "tiny"
        args.runs, args.batch_runs = min(args.runs, 3), min(args.batch_runs, 1)
        if args.batches == "1,8,32":
            args.batches = "1,4"
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peaks = peak_figures(device, args)
    common = {"device": peaks["device"], "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")}
    report = Report(common)
    report.emit(figure="gpu_peaks", **{k: v for k, v in peaks.items() if k != "device"})
    for size in [s.strip() for s in args.sizes.split(",") if s.strip()]:
        if size not in LLAMA:
            sys.exit(f"unknown size {size!r}; choose from 7b, 13b")
        run_size(size, args, device, dtype, peaks, report)
    report.emit(figure="total_s", value=round(time.perf_counter() - args.started, 1), unit="s")
    report.table()


if __name__ == "__main__":
    main()
