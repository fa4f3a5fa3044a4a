"""Build a fresh LISA model (random weights) from configs: the tiny test model, or any size.

Every model lisa-seg trains from scratch starts here; released checkpoints go through
``lisa.interop`` instead. ``ModelSize.vlm`` picks the VLM (Llava here, Qwen2.5-VL / Qwen3-VL in
``lisa.model.build_qwen``); ``sam2`` / ``sam3_tracker`` pick the mask backbone (default SAM).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    BaseImageProcessor,
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    PreTrainedTokenizerFast,
    PretrainedConfig,
    PreTrainedModel,
    Sam2Config,
    Sam2HieraDetConfig,
    Sam2MaskDecoderConfig,
    Sam2PromptEncoderConfig,
    Sam2VisionConfig,
    SamConfig,
    SamMaskDecoderConfig,
    SamPromptEncoderConfig,
    SamVisionConfig,
)

from lisa.batch import SEG_TOKEN
from lisa.errors import LisaError
from lisa.model.config import LisaConfig, count_image_tokens
from lisa.model.lisa import LisaModel
from lisa.model.mask_backbones import backbone_of_config

IMAGE_TOKEN = "<image>"
SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", SEG_TOKEN, IMAGE_TOKEN]
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

_BASE_CORPUS = """A chat between a curious human and an artificial intelligence assistant.
The assistant gives helpful, detailed, and polite answers to the human's questions.
USER: ASSISTANT: Can you segment the object in this image? Please segment the thing in this image.
What is it in this image? Please respond with segmentation mask. Please output segmentation mask.
Sure, it is. Sure, the segmentation result is. It is. Yes. No. There is no such object in the image.
Please output segmentation mask and explain why. And explain the reason. And give some explanation.
0 1 2 3 4 5 6 7 8 9 , . ? ! ' " : ; - ( ) [ ] < > / abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ
"""


@dataclass
class SamSize:
    """A SAM's size (the defaults are lisa-tiny's)."""

    hidden: int = 128
    layers: int = 6
    heads: int = 4
    image_size: int = 256
    patch: int = 16  # 16x16 image embedding, 64x64 low-resolution masks at 256 px
    window: int = 8
    prompt_dim: int = 128
    decoder_mlp: int = 512
    decoder_heads: int = 4
    mask_input_channels: int = 16  # SAM's mask-prompt encoder (unused by LISA, but it has weights)


def build_sam_config(size: SamSize) -> SamConfig:
    return SamConfig(
        vision_config=SamVisionConfig(
            hidden_size=size.hidden, output_channels=size.prompt_dim, num_hidden_layers=size.layers,
            num_attention_heads=size.heads, image_size=size.image_size, patch_size=size.patch,
            window_size=size.window, global_attn_indexes=[size.layers - 1],
            num_pos_feats=size.prompt_dim // 2, initializer_range=0.02,
        ),
        prompt_encoder_config=SamPromptEncoderConfig(
            hidden_size=size.prompt_dim, image_size=size.image_size, patch_size=size.patch, mask_input_channels=size.mask_input_channels
        ),
        mask_decoder_config=SamMaskDecoderConfig(
            hidden_size=size.prompt_dim, mlp_dim=size.decoder_mlp, num_attention_heads=size.decoder_heads,
            iou_head_hidden_dim=size.prompt_dim,
        ),
    )


@dataclass
class Sam2Size:
    """A SAM 2's size (the defaults: a tiny test model, 64 px, 4x4 image embedding, 16x16 masks).
    The Hiera encoder's four stages halve the resolution after a stride-4 patch embedding."""

    image_size: int = 64
    hidden: int = 16  # Hiera stage-1 width; later stages double it
    blocks: list[int] = field(default_factory=lambda: [1, 2, 1, 1])
    heads: list[int] = field(default_factory=lambda: [1, 1, 2, 2])
    windows: list[int] = field(default_factory=lambda: [4, 4, 2, 2])
    global_blocks: list[int] = field(default_factory=lambda: [2])  # never a stage's first block
    prompt_dim: int = 32  # FPN width = prompt size = mask-decoder width
    decoder_mlp: int = 64
    decoder_heads: int = 2


def build_sam2_config(size: Sam2Size) -> Sam2Config:
    widths = [size.hidden * 2**stage for stage in range(len(size.blocks))]
    stride = size.image_size // 4  # the stride-4 level
    backbone = Sam2HieraDetConfig(
        hidden_size=size.hidden, num_attention_heads=size.heads[0], image_size=[size.image_size] * 2,
        blocks_per_stage=size.blocks, embed_dim_per_stage=widths, num_attention_heads_per_stage=size.heads,
        window_size_per_stage=size.windows, global_attention_blocks=size.global_blocks,
        window_positional_embedding_background_size=[size.windows[0]] * 2,
    )
    vision = Sam2VisionConfig(
        backbone_config=backbone, backbone_channel_list=widths[::-1], fpn_hidden_size=size.prompt_dim,
        backbone_feature_sizes=[[stride, stride], [stride // 2, stride // 2], [stride // 4, stride // 4]],
    )
    return Sam2Config(
        vision_config=vision,
        prompt_encoder_config=Sam2PromptEncoderConfig(hidden_size=size.prompt_dim, image_size=size.image_size, patch_size=16),
        mask_decoder_config=Sam2MaskDecoderConfig(
            hidden_size=size.prompt_dim, mlp_dim=size.decoder_mlp, num_attention_heads=size.decoder_heads,
            iou_head_hidden_dim=size.prompt_dim,
        ),
    )


@dataclass
class Sam3TrackerSize:
    """A SAM 3 tracker's size (SAM 3's ViT + SAM 2's decoder; the defaults: a tiny test model,
    56 px with patch 14, a 4x4 image embedding, 16x16 masks)."""

    image_size: int = 56
    patch: int = 14
    hidden: int = 32
    intermediate: int = 64
    layers: int = 2
    heads: int = 2
    window: int = 2
    global_blocks: list[int] = field(default_factory=lambda: [1])
    prompt_dim: int = 32  # FPN width = prompt size = mask-decoder width
    decoder_mlp: int = 64
    decoder_heads: int = 2


def build_sam3_tracker_config(size: Sam3TrackerSize) -> PretrainedConfig:
    # Imported here: SAM 3's config classes are needed only by this choice.
    from transformers import Sam3TrackerConfig
    from transformers.models.sam3.configuration_sam3 import Sam3ViTConfig, Sam3VisionConfig
    from transformers.models.sam3_tracker.configuration_sam3_tracker import (
        Sam3TrackerMaskDecoderConfig,
        Sam3TrackerPromptEncoderConfig,
    )

    vit = Sam3ViTConfig(
        hidden_size=size.hidden, intermediate_size=size.intermediate, num_hidden_layers=size.layers,
        num_attention_heads=size.heads, image_size=size.image_size, patch_size=size.patch, window_size=size.window,
        global_attn_indexes=size.global_blocks, pretrain_image_size=size.image_size,
    )
    side = size.image_size // size.patch  # the ViT grid = the stride-16 level the decoder reads
    vision = Sam3VisionConfig(backbone_config=vit, fpn_hidden_size=size.prompt_dim,
                              backbone_feature_sizes=[[4 * side] * 2, [2 * side] * 2, [side] * 2])
    return Sam3TrackerConfig(
        vision_config=vision,
        prompt_encoder_config=Sam3TrackerPromptEncoderConfig(hidden_size=size.prompt_dim, image_size=size.image_size,
                                                             patch_size=size.patch),
        mask_decoder_config=Sam3TrackerMaskDecoderConfig(
            hidden_size=size.prompt_dim, mlp_dim=size.decoder_mlp, num_attention_heads=size.decoder_heads,
            iou_head_hidden_dim=size.prompt_dim,
        ),
    )


@dataclass
class QwenVisionSize:
    """The Qwen2.5-VL / Qwen3-VL ViT knobs besides ``ModelSize.vision_*`` (the defaults are the
    tiny test model's) and its pixel budget, which sets how many image tokens an image gives."""

    patch: int = 8
    merge: int = 2  # merge x merge patches -> one image token
    window: int = 32  # pixels per side of a windowed-attention window (Qwen2.5-VL)
    min_pixels: int = 16 * 16
    max_pixels: int = 64 * 64  # at most (64 / 16)^2 = 16 image tokens per image


VlmName = Literal["llava", "qwen2_5_vl", "qwen3_vl"]  # model.build.vlm
VLMS = get_args(VlmName)


def _tiny_sam() -> SamSize:
    return SamSize(hidden=32, layers=2, heads=2, image_size=64, patch=16, window=2, prompt_dim=32,
                   decoder_mlp=64, decoder_heads=2)


@dataclass
class ModelSize:
    """The knobs that set a model's size (all other choices follow LISA); the one size type of
    lisa-seg: training configs (``model.build``), the test models and the released-layout
    look-alikes (``lisa.interop.fixtures``) all use it. Sizes may be given as dicts.

    ``vlm`` picks the VLM; the mask backbone is SAM of ``sam`` unless ``sam2`` or
    ``sam3_tracker`` is given (at most one)."""

    vlm: VlmName = "llava"

    text_hidden: int = 64
    text_layers: int = 2
    text_heads: int = 4
    text_intermediate: int = 128
    vision_hidden: int = 32
    vision_layers: int = 2
    vision_heads: int = 4
    vision_image_size: int = 32
    vision_patch: int = 8
    max_positions: int = 512
    vocab_size: int = 400
    sam: SamSize = field(default_factory=_tiny_sam)
    sam2: Sam2Size | None = None  # given: the mask backbone is a fresh SAM 2 of this size, not SAM
    sam3_tracker: Sam3TrackerSize | None = None  # given: a fresh SAM 3 tracker of this size
    qwen_vision: QwenVisionSize = field(default_factory=QwenVisionSize)  # vlm qwen2_5_vl / qwen3_vl only

    def __post_init__(self) -> None:
        if isinstance(self.sam, dict):  # from a YAML config
            self.sam = SamSize(**self.sam)
        if isinstance(self.sam2, dict):
            self.sam2 = Sam2Size(**self.sam2)
        if isinstance(self.sam3_tracker, dict):
            self.sam3_tracker = Sam3TrackerSize(**self.sam3_tracker)
        if isinstance(self.qwen_vision, dict):
            self.qwen_vision = QwenVisionSize(**self.qwen_vision)
        if self.vlm not in VLMS:  # a YAML config is checked by its schema first; this is for Python callers
            raise LisaError(f"unknown VLM {self.vlm!r} in model.build.vlm; choose one of {', '.join(VLMS)}")


def build_mask_config(size: ModelSize) -> PretrainedConfig:
    """The fresh mask backbone's config: SAM 2 or SAM 3's tracker when given, else SAM."""
    if size.sam2 is not None and size.sam3_tracker is not None:
        raise LisaError("model.build: give at most one of sam2 and sam3_tracker (neither: SAM)")
    if size.sam2 is not None:
        return build_sam2_config(size.sam2)
    if size.sam3_tracker is not None:
        return build_sam3_tracker_config(size.sam3_tracker)
    return build_sam_config(size.sam)


def build_tokenizer(corpus: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE trained on ``corpus`` (offline, in well under a second for small corpora)."""
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([_BASE_CORPUS, *corpus], trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        model_max_length=2048,
    )
    tokenizer.add_tokens([SEG_TOKEN, IMAGE_TOKEN], special_tokens=True)
    return tokenizer


def build_image_processor(image_size: int) -> CLIPImageProcessorPil:
    """Resize the whole image to a square (no centre crop: the LLM sees everything SAM sees)."""
    return CLIPImageProcessorPil(
        do_resize=True,
        size={"height": image_size, "width": image_size},
        resample=3,  # bicubic, as CLIP
        do_center_crop=False,
        do_rescale=True,
        rescale_factor=1 / 255,
        do_normalize=True,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        do_convert_rgb=True,
    )


def build_config(size: ModelSize, tokenizer: PreTrainedTokenizerFast, sam: PretrainedConfig | None = None) -> LisaConfig:
    """The Llava config; ``sam``: any registered mask backbone's config, None: ``size``'s
    (``build_mask_config``)."""
    vocab = len(tokenizer)
    text = LlamaConfig(
        vocab_size=vocab,
        hidden_size=size.text_hidden,
        intermediate_size=size.text_intermediate,
        num_hidden_layers=size.text_layers,
        num_attention_heads=size.text_heads,
        num_key_value_heads=size.text_heads,
        max_position_embeddings=size.max_positions,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,
    )
    vision = CLIPVisionConfig(
        hidden_size=size.vision_hidden,
        intermediate_size=size.vision_hidden * 4,
        num_hidden_layers=size.vision_layers,
        num_attention_heads=size.vision_heads,
        image_size=size.vision_image_size,
        patch_size=size.vision_patch,
        projection_dim=size.vision_hidden,
    )
    image_token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    vlm = LlavaConfig(
        vision_config=vision,
        text_config=text,
        image_token_id=image_token_id,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        projector_hidden_act="gelu",
        tie_word_embeddings=False,
    )
    if sam is None:
        sam = build_mask_config(size)
    sam_dict = sam.to_dict()
    return LisaConfig(
        vlm=vlm.to_dict(),
        sam=sam_dict,
        seg_token_id=tokenizer.convert_tokens_to_ids(SEG_TOKEN),
        image_token_id=image_token_id,
        num_image_tokens=count_image_tokens(vlm),
        out_dim=backbone_of_config(sam_dict).prompt_dim(sam_dict),
    )


def build_model(
    size: ModelSize, corpus: list[str] | None = None, sam: PreTrainedModel | None = None
) -> tuple[LisaModel, PreTrainedTokenizerFast, BaseImageProcessor]:
    """A fresh model of ``size.vlm`` with ``size``'s mask backbone; ``sam`` (e.g. trained in
    stage 1, or any registered mask model such as a ``Sam2Model``) replaces the random one."""
    if size.vlm != "llava":
        from lisa.model.build_qwen import build_qwen_model  # it imports this module

        return build_qwen_model(size, size.qwen_vision, corpus, family=size.vlm, sam=sam)
    tokenizer = build_tokenizer(corpus or [], size.vocab_size)
    config = build_config(size, tokenizer, sam.config if sam is not None else None)
    model = LisaModel(config).eval()
    start_mask_backbone(model, sam)
    return model, tokenizer, build_image_processor(size.vision_image_size)


def start_mask_backbone(model: LisaModel, sam: PreTrainedModel | None) -> None:
    """The given mask model's weights, or a from-scratch init through the seam (HF's own init
    leaves SAM-family decoders' logits near 1e-5)."""
    if sam is not None:
        model.sam.load_state_dict(sam.state_dict())
    else:
        model.mask_backbone.init_from_scratch()


def save_bundle(
    directory: str | Path, model: LisaModel, tokenizer: PreTrainedTokenizerFast, image_processor: BaseImageProcessor
) -> None:
    """Weights, config, tokenizer and image processor in one folder that LisaPipeline loads."""
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    image_processor.save_pretrained(directory)


def write_tiny_model(directory: str | Path, seed: int = 0) -> Path:
    """A tiny random-weight model (a few MB) for tests and for trying the pipeline."""
    import torch

    torch.manual_seed(seed)
    model, tokenizer, processor = build_model(ModelSize())
    save_bundle(directory, model, tokenizer, processor)
    return Path(directory)
