"""Build a fresh LISA model on Qwen2.5-VL or Qwen3-VL (random weights): the tiny test model, or any size.

The counterpart of ``lisa.model.build`` (Llava) for the dynamic-resolution backbone: a ChatML
tokenizer with Qwen's special tokens and chat template, a Qwen2-VL image processor whose pixel
budget sets how many image tokens each image gives, and ``chat_template="tokenizer"``.
"""

from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    PretrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2VLImageProcessorPil,
    Qwen3VLConfig,
)

from lisa.batch import SEG_TOKEN
from lisa.errors import LisaError
from lisa.model.build import (
    _BASE_CORPUS,
    CLIP_MEAN,
    CLIP_STD,
    ModelSize,
    QwenVisionSize,
    build_mask_config,
    save_bundle,
    start_mask_backbone,
)
from lisa.model.config import LisaConfig, stored_image_tokens
from lisa.model.lisa import LisaModel
from lisa.model.mask_backbones import backbone_of_config

QWEN_SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|image_pad|>", "<|video_pad|>",
]
# Qwen2.5-VL's own template, reduced to string contents (lisa-seg places the image itself).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def build_qwen_tokenizer(corpus: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``corpus`` with Qwen's special tokens and chat template."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=QWEN_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    backend.train_from_iterator([_BASE_CORPUS, *corpus], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=2048,
    )
    tokenizer.add_tokens([*QWEN_SPECIAL_TOKENS, SEG_TOKEN], special_tokens=True)
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer


def build_qwen_image_processor(vision: QwenVisionSize) -> Qwen2VLImageProcessorPil:
    return Qwen2VLImageProcessorPil(
        patch_size=vision.patch, temporal_patch_size=2, merge_size=vision.merge,
        size={"shortest_edge": vision.min_pixels, "longest_edge": vision.max_pixels},
        image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True,
    )


QWEN_FAMILIES = ("qwen2_5_vl", "qwen3_vl")


def build_qwen_config(
    size: ModelSize, vision: QwenVisionSize, tokenizer: PreTrainedTokenizerFast, sam: PretrainedConfig | None = None,
    family: str = "qwen2_5_vl",
) -> LisaConfig:
    """``family``: "qwen2_5_vl" or "qwen3_vl" (the same tokens, processor and positions; Qwen3-VL
    adds DeepStack from the first ViT layer). ``sam``: any registered mask backbone's config,
    None: ``size``'s (``build_mask_config``)."""
    if family not in QWEN_FAMILIES:
        raise LisaError(f"unknown Qwen VLM family {family!r}; supported: {', '.join(QWEN_FAMILIES)}")
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in QWEN_SPECIAL_TOKENS}
    head_dim = size.text_hidden // size.text_heads
    quarter = head_dim // 2 // 4  # mrope sections (t, h, w) split the rotary half of a head
    text = dict(
        vocab_size=len(tokenizer), hidden_size=size.text_hidden, intermediate_size=size.text_intermediate,
        num_hidden_layers=size.text_layers, num_attention_heads=size.text_heads, num_key_value_heads=size.text_heads,
        max_position_embeddings=size.max_positions, bos_token_id=None, eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                         "mrope_section": [head_dim // 2 - 2 * quarter, quarter, quarter]},
        tie_word_embeddings=False,
    )
    vision_config = dict(
        depth=size.vision_layers, hidden_size=size.vision_hidden, intermediate_size=size.vision_hidden * 4,
        num_heads=size.vision_heads, patch_size=vision.patch, spatial_merge_size=vision.merge, temporal_patch_size=2,
        out_hidden_size=size.text_hidden,
    )
    tokens = dict(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
                  vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    if family == "qwen3_vl":
        text["head_dim"] = head_dim
        text["rope_parameters"]["mrope_interleaved"] = True
        side = vision.max_pixels ** 0.5 // vision.patch  # learned position grid: the largest image's
        vision_config.update(num_position_embeddings=int(side * side), deepstack_visual_indexes=[0])
        vlm = Qwen3VLConfig(text_config=text, vision_config=vision_config, tie_word_embeddings=False, **tokens)
    else:
        vision_config.update(window_size=vision.window, fullatt_block_indexes=[size.vision_layers - 1],
                             tokens_per_second=2)
        vlm = Qwen2_5_VLConfig(text_config=text, vision_config=vision_config, tie_word_embeddings=False, **tokens)
    sam_dict = (sam or build_mask_config(size)).to_dict()
    return LisaConfig(
        vlm=vlm.to_dict(), sam=sam_dict, seg_token_id=tokenizer.convert_tokens_to_ids(SEG_TOKEN),
        image_token_id=ids["<|image_pad|>"], num_image_tokens=stored_image_tokens(vlm), chat_template="tokenizer",
        out_dim=backbone_of_config(sam_dict).prompt_dim(sam_dict),
    )


def build_qwen_model(
    size: ModelSize, vision: QwenVisionSize | None = None, corpus: list[str] | None = None,
    family: str = "qwen2_5_vl", sam: PreTrainedModel | None = None,
) -> tuple[LisaModel, PreTrainedTokenizerFast, Qwen2VLImageProcessorPil]:
    """A fresh model with ``size``'s mask backbone; ``sam`` (any registered mask model) replaces
    the random one. ``vision``: None takes ``size.qwen_vision``."""
    vision = vision or size.qwen_vision
    tokenizer = build_qwen_tokenizer(corpus or [], size.vocab_size)
    config = build_qwen_config(size, vision, tokenizer, sam.config if sam is not None else None, family=family)
    model = LisaModel(config).eval()
    start_mask_backbone(model, sam)
    return model, tokenizer, build_qwen_image_processor(vision)


def write_tiny_qwen_model(directory: str | Path, seed: int = 0, family: str = "qwen2_5_vl") -> Path:
    """A tiny random-weight Qwen2.5-VL (or Qwen3-VL) + SAM model folder (about a megabyte) for tests."""
    import torch

    torch.manual_seed(seed)
    model, tokenizer, processor = build_qwen_model(ModelSize(), family=family)
    save_bundle(directory, model, tokenizer, processor)
    return Path(directory)
