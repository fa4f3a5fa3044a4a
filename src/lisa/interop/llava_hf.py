"""Training bases for `lisa init`: a LLaVA (or Qwen2.5-VL, ``lisa.interop.qwen_vl_hf``) folder +
a SAM checkpoint -> a fresh LISA.

Two LLaVA layouts:
- llava-hf (``llava-hf/llava-1.5-7b-hf``, 13b): ``LlavaConfig``, MLP projector, 336-px CLIP
  inside the folder; keys in the transformers 4.x layout (``language_model.model.*``) or the
  5.x one (``model.language_model.*``).
- LLaVA-v1 (``LLaVA-Lightning-7B-v1-1``, the base of LISA-7B-v1): LLaMA keys + linear
  ``mm_projector``, CLIP from ``--vision-tower``, ``<im_start>``/``<im_end>`` in the tokenizer.
``[SEG]`` is added to the tokenizer (new embedding / lm_head rows ~ N(0, 0.02), as the
official training does); the seg head is freshly initialised.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from transformers import AutoTokenizer, CLIPImageProcessorPil, LlavaConfig

from lisa.errors import LisaError
from lisa.interop.clip import clip_image_processor, clip_key, clip_vision_config
from lisa.interop.official import (
    IMAGE_END, IMAGE_START, SEG_TOKEN, llava_v1_config, llava_v1_key, token_id,
)
from lisa.interop.sam_original import load_sam
from lisa.interop.sp_tokenizer import load_llama_tokenizer
from lisa.interop.stream import checkpoint_shards, iter_shard, map_tensors
from lisa.model.config import LisaConfig, stored_image_tokens
from lisa.model.lisa import LisaModel
from lisa.model.weights import load_state_strict

_EMBEDDING_KEYS = ("vlm.model.language_model.embed_tokens.weight", "vlm.lm_head.weight")
_HF_RULES = [  # transformers 4.x Llava layout -> ours; 5.x names only gain the "vlm." prefix
    (re.compile(r"language_model\.model\.(.+)"), r"vlm.model.language_model.\1"),
    (re.compile(r"language_model\.lm_head\.(.+)"), r"vlm.lm_head.\1"),
    (re.compile(r"vision_tower\.vision_model\.(.+)"), r"vlm.model.vision_tower.\1"),
    (re.compile(r"multi_modal_projector\.(.+)"), r"vlm.model.multi_modal_projector.\1"),
    (re.compile(r"(model\.(language_model|vision_tower|multi_modal_projector)\..+|lm_head\..+)"), r"vlm.\1"),
]


def llava_hf_key(name: str) -> str | None:
    if name.endswith(("position_ids", "rotary_emb.inv_freq")):
        return None
    for pattern, replacement in _HF_RULES:
        if pattern.fullmatch(name):
            return pattern.sub(replacement, name)
    raise KeyError(name)


def llava_v1_base_key(name: str) -> str | None:
    if name.startswith("model.vision_tower."):  # some v1 folders carry CLIP; we read --vision-tower
        return None
    return llava_v1_key(name)


def is_llava_hf(directory: Path) -> bool:
    config = json.loads((directory / "config.json").read_text())
    return "text_config" in config


def _read_state(directory: Path, key_map) -> dict[str, torch.Tensor]:
    tensors = (item for path in checkpoint_shards(directory) for item in iter_shard(path))
    return map_tensors(tensors, key_map, directory)


def _add_seg_token(tokenizer) -> int:
    if SEG_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([SEG_TOKEN])
    return token_id(tokenizer, SEG_TOKEN)


def _vlm_llava_hf(directory: Path):
    config = LlavaConfig.from_pretrained(str(directory))
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    seg_id = _add_seg_token(tokenizer)
    config.text_config.vocab_size = max(config.text_config.vocab_size, len(tokenizer))
    state = _read_state(directory, llava_hf_key)
    processor = CLIPImageProcessorPil.from_pretrained(str(directory))
    lisa = dict(projector="mlp", image_token_id=int(config.image_token_id), strip_text_around_tokens=False)
    return config, tokenizer, seg_id, state, processor, lisa


def _vlm_llava_v1(directory: Path, vision_tower: str | Path | None):
    if vision_tower is None:
        raise LisaError(f"{directory} is a LLaVA-v1 folder without CLIP: pass --vision-tower CLIP_DIR")
    raw = json.loads((directory / "config.json").read_text())
    tokenizer = load_llama_tokenizer(directory)
    seg_id = _add_seg_token(tokenizer)
    raw["vocab_size"] = max(raw["vocab_size"], len(tokenizer))
    config = llava_v1_config(raw, clip_vision_config(vision_tower))
    state = _read_state(directory, llava_v1_base_key)
    state.update(_read_state(Path(vision_tower), clip_key))
    start_end = bool(raw.get("mm_use_im_start_end", False))
    lisa = dict(
        projector="linear", image_token_id=int(config.image_token_id), strip_text_around_tokens=True,
        image_start_id=token_id(tokenizer, IMAGE_START) if start_end else None,
        image_end_id=token_id(tokenizer, IMAGE_END) if start_end else None,
    )
    return config, tokenizer, seg_id, state, clip_image_processor(vision_tower), lisa


def _grow_embeddings(state: dict[str, torch.Tensor], rows: int, seg_id: int, std: float) -> None:
    """Pad the embedding and lm_head to ``rows`` and give [SEG] a fresh N(0, std) row."""
    for key in (k for k in _EMBEDDING_KEYS if k in state):  # a tied lm_head has no tensor of its own
        weight = state[key]
        if weight.shape[0] < rows:
            extra = torch.zeros(rows - weight.shape[0], weight.shape[1], dtype=weight.dtype)
            weight = torch.cat([weight, extra])
        weight = weight.clone()
        weight[seg_id] = torch.randn(weight.shape[1]).mul_(std).to(weight.dtype)
        state[key] = weight


def init_lisa(vlm: str | Path, sam: str | Path, out: str | Path, vision_tower: str | Path | None = None, seed: int = 0) -> Path:
    """Write a lisa-seg folder: the LLaVA weights, SAM, and a new seg head (and [SEG] row)."""
    vlm, out = Path(vlm), Path(out)
    if not (vlm / "config.json").is_file():
        raise LisaError(f"{vlm}: config.json is missing; give a llava-hf, LLaVA-v1 or Qwen2.5-VL folder")
    torch.manual_seed(seed)
    from lisa.interop.qwen_vl_hf import model_type, read_qwen_vl

    if model_type(vlm) in ("qwen2_5_vl", "qwen3_vl"):
        vlm_config, tokenizer, seg_id, state, processor, lisa = read_qwen_vl(vlm, _add_seg_token, _read_state)
    elif is_llava_hf(vlm):
        vlm_config, tokenizer, seg_id, state, processor, lisa = _vlm_llava_hf(vlm)
    else:
        vlm_config, tokenizer, seg_id, state, processor, lisa = _vlm_llava_v1(vlm, vision_tower)
    sam_config, sam_state = load_sam(sam)
    config = LisaConfig(
        vlm=vlm_config.to_dict(), sam=sam_config.to_dict(), seg_token_id=seg_id,
        num_image_tokens=stored_image_tokens(vlm_config), out_dim=sam_config.prompt_encoder_config.hidden_size,
        extra={"initialised_from": {"vlm": str(vlm), "sam": str(sam)}}, **lisa,
    )
    model = LisaModel(config)
    std = float(getattr(vlm_config.text_config, "initializer_range", 0.02))
    _grow_embeddings(state, vlm_config.text_config.vocab_size, seg_id, std)
    seg_head = {f"seg_head.{k}": v for k, v in model.seg_head.state_dict().items()}
    load_state_strict(model, {**state, **{f"sam.{k}": v for k, v in sam_state.items()}, **seg_head})
    model.save_pretrained(out)
    tokenizer.save_pretrained(str(out))
    processor.save_pretrained(str(out))
    return out
