"""Tiny checkpoints laid out exactly like the released ones, for tests, benchmarks and
`lisa fixtures official` (try convert / init / segment --vision-tower in a minute).

``write_tiny_official`` builds a LisaModel directly, then writes its tensors under the
official names (LLaMA ``model.*``, ``model.mm_projector``, ``model.visual_model.*`` with the
original SAM names, ``model.text_hidden_fcs.0.{0,2}``, ``rotary_emb.inv_freq``), a
sentencepiece tokenizer with the four added tokens, a config.json with the fields of the
released LISA-7B-v1 config.json, and a separate CLIP folder (full CLIPModel, text half
included). ``write_fixtures`` adds a llava-hf folder, a LLaVA-v1 folder and an original SAM
``.pth``, the inputs of `lisa init` and `lisa convert sam`.
"""

from __future__ import annotations

import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import (
    CLIPConfig, CLIPImageProcessorPil, CLIPModel, CLIPVisionConfig, LlamaConfig, LlavaConfig,
    LlavaForConditionalGeneration, SamConfig, SamModel,
)

from lisa.interop.stream import checkpoint_shards, iter_shard
from lisa.model.build import ModelSize, SamSize, build_sam_config
from lisa.model.config import LisaConfig, count_image_tokens
from lisa.model.lisa import LisaModel

ADDED = ["<im_patch>", "<im_start>", "<im_end>", "[SEG]"]
_CORPUS = """A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, detailed, and polite answers to the human's questions.
USER: What is dog in this image? Please output segmentation mask. ASSISTANT: Sure, it is. Sure, the segmentation result is. It is the cat .
Can you segment the red thing in this picture? Please respond with segmentation mask. What is it? There is no such object in the image. 0 1 2 3 4 5 6 7 8 9
"""


def official_tiny_size(**changes) -> ModelSize:
    """The look-alikes' size: lisa-seg's tiny ``ModelSize`` with a 3-layer CLIP, and a SAM with
    8 decoder heads and 4 mask-prompt channels. ``vocab_size`` is the sentencepiece vocabulary;
    the four added tokens (``ADDED``) take the ids after it, as in the released tokenizers."""
    sam = SamSize(hidden=32, layers=2, heads=2, image_size=64, patch=16, window=2, prompt_dim=32,
                  decoder_mlp=64, decoder_heads=8, mask_input_channels=4)
    return dataclasses.replace(ModelSize(vision_layers=3, sam=sam), **changes)


@dataclass
class TinyOfficial:
    directory: Path  # the released-layout LISA folder
    clip_dir: Path
    model: LisaModel  # the same weights, built directly (fp32 holding bf16-exact values)


def train_sentencepiece(directory: Path, vocab_size: int) -> None:
    """A LLaMA-like sentencepiece BPE (byte fallback, no normalisation) + the slow-tokenizer files."""
    import sentencepiece

    directory.mkdir(parents=True, exist_ok=True)
    corpus = directory / "corpus.txt"
    corpus.write_text(_CORPUS * 8)
    sentencepiece.SentencePieceTrainer.train(
        input=str(corpus), model_prefix=str(directory / "tokenizer"), vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0,
        normalization_rule_name="identity", remove_extra_whitespaces=False, split_digits=True, minloglevel=2,
    )
    corpus.unlink()
    (directory / "tokenizer.vocab").unlink()
    _json(directory / "tokenizer_config.json", {
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
        "unk_token": "<unk>", "pad_token": None, "legacy": True, "clean_up_tokenization_spaces": False,
        "model_max_length": 512, "padding_side": "right", "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer",
    })
    _json(directory / "special_tokens_map.json", {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<unk>"})
    _json(directory / "added_tokens.json", {token: vocab_size + i for i, token in enumerate(ADDED)})


def tiny_lisa_config(size: ModelSize) -> LisaConfig:
    vocab = size.vocab_size + len(ADDED)
    text = LlamaConfig(
        vocab_size=vocab, hidden_size=size.text_hidden, intermediate_size=size.text_intermediate,
        num_hidden_layers=size.text_layers, num_attention_heads=size.text_heads, num_key_value_heads=size.text_heads,
        rms_norm_eps=1e-6, max_position_embeddings=size.max_positions, bos_token_id=1, eos_token_id=2, pad_token_id=0,
        tie_word_embeddings=False,
    )
    vlm = LlavaConfig(
        vision_config=_clip_config(size).vision_config, text_config=text, image_token_id=-200,
        vision_feature_layer=-2, vision_feature_select_strategy="default", tie_word_embeddings=False,
    )
    return LisaConfig(
        vlm=vlm.to_dict(), sam=_sam_config(size).to_dict(), seg_token_id=size.vocab_size + 3, image_token_id=-200,
        num_image_tokens=count_image_tokens(vlm), projector="linear", image_start_id=size.vocab_size + 1,
        image_end_id=size.vocab_size + 2, strip_text_around_tokens=True, out_dim=size.sam.prompt_dim,
    )


def _clip_config(size: ModelSize) -> CLIPConfig:
    vision = CLIPVisionConfig(
        hidden_size=size.vision_hidden, intermediate_size=size.vision_hidden * 4, num_hidden_layers=size.vision_layers,
        num_attention_heads=size.vision_heads, image_size=size.vision_image_size, patch_size=size.vision_patch, projection_dim=16,
    )
    text = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "vocab_size": 50, "max_position_embeddings": 16, "projection_dim": 16,
            "bos_token_id": 0, "eos_token_id": 1, "pad_token_id": 1}
    return CLIPConfig(text_config=text, vision_config=vision.to_dict(), projection_dim=16)


def _sam_config(size: ModelSize) -> SamConfig:
    return build_sam_config(size.sam)


def official_config_json(config: LisaConfig) -> dict:
    """config.json as the released checkpoints have it (xinlai/LISA-7B-v1's field names)."""
    text = config.vlm["text_config"]
    fields = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
              "num_key_value_heads", "rms_norm_eps", "max_position_embeddings", "bos_token_id", "eos_token_id", "pad_token_id")
    return {
        "_name_or_path": "LLaVA-Lightning-7B-v1-1", "architectures": ["LISAForCausalLM"], "model_type": "llava",
        **{name: text[name] for name in fields},
        "hidden_act": "silu", "initializer_range": 0.02, "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "transformers_version": "4.31.0", "use_cache": False, "train_mask_decoder": True, "out_dim": config.out_dim,
        "vision_tower": "openai/clip-vit-large-patch14", "mm_vision_tower": "openai/clip-vit-large-patch14",
        "mm_use_im_start_end": True, "mm_use_im_patch_token": False, "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch", "mm_hidden_size": config.vlm["vision_config"]["hidden_size"],
        "use_mm_proj": True, "image_aspect_ratio": "square", "image_grid_pinpoints": None,
        "tune_mm_mlp_adapter": False, "freeze_mm_mlp_adapter": True, "pretrain_mm_mlp_adapter": None,
        "pretraining_tp": 1, "rope_scaling": None,
    }


# ---- our names -> official names (the inverse of lisa.interop, written independently) ---
_SAM_INVERSE = [
    (r"vision_encoder\.patch_embed\.projection\.", "image_encoder.patch_embed.proj."),
    (r"vision_encoder\.layers\.(\d+)\.layer_norm([12])\.", r"image_encoder.blocks.\1.norm\2."),
    (r"vision_encoder\.layers\.", "image_encoder.blocks."),
    (r"vision_encoder\.neck\.conv1\.", "image_encoder.neck.0."),
    (r"vision_encoder\.neck\.layer_norm1\.", "image_encoder.neck.1."),
    (r"vision_encoder\.neck\.conv2\.", "image_encoder.neck.2."),
    (r"vision_encoder\.neck\.layer_norm2\.", "image_encoder.neck.3."),
    (r"vision_encoder\.", "image_encoder."),
    (r"shared_image_embedding\.positional_embedding", "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"),
    (r"prompt_encoder\.point_embed\.", "prompt_encoder.point_embeddings."),
    (r"prompt_encoder\.mask_embed\.conv1\.", "prompt_encoder.mask_downscaling.0."),
    (r"prompt_encoder\.mask_embed\.layer_norm1\.", "prompt_encoder.mask_downscaling.1."),
    (r"prompt_encoder\.mask_embed\.conv2\.", "prompt_encoder.mask_downscaling.3."),
    (r"prompt_encoder\.mask_embed\.layer_norm2\.", "prompt_encoder.mask_downscaling.4."),
    (r"prompt_encoder\.mask_embed\.conv3\.", "prompt_encoder.mask_downscaling.6."),
    (r"transformer\.layers\.(\d+)\.layer_norm(\d)\.", r"transformer.layers.\1.norm\2."),
    (r"transformer\.layer_norm_final_attn\.", "transformer.norm_final_attn."),
    (r"mask_decoder\.upscale_conv1\.", "mask_decoder.output_upscaling.0."),
    (r"mask_decoder\.upscale_layer_norm\.", "mask_decoder.output_upscaling.1."),
    (r"mask_decoder\.upscale_conv2\.", "mask_decoder.output_upscaling.3."),
    (r"(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.proj_in\.", r"\1.layers.0."),
    (r"(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.proj_out\.", r"\1.layers.LAST."),
]


def original_sam_name(name: str, iou_depth: int = 3) -> str:
    mlp = re.search(r"(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.layers\.(\d+)\.", name)
    if mlp:  # HF's middle layers are shifted by one
        name = name.replace(mlp.group(0), f"{mlp.group(1)}.layers.{int(mlp.group(2)) + 1}.")
    for pattern, replacement in _SAM_INVERSE:
        name = re.sub(pattern, replacement, name, count=1)
    return name.replace("LAST", str(iou_depth - 1))


def official_state(model: LisaModel) -> dict[str, torch.Tensor]:
    """The model's tensors under the released checkpoint's names (CLIP excluded)."""
    state: dict[str, torch.Tensor] = {}
    for name, tensor in model.state_dict().items():
        if name.startswith("vlm.model.vision_tower.") or name == "sam.prompt_encoder.shared_embedding.positional_embedding":
            continue
        if name.startswith("vlm.model.language_model."):
            state["model." + name[len("vlm.model.language_model."):]] = tensor
        elif name.startswith("vlm.model.multi_modal_projector.linear."):
            state["model.mm_projector." + name.rsplit(".", 1)[1]] = tensor
        elif name == "vlm.lm_head.weight":
            state["lm_head.weight"] = tensor
        elif name.startswith("seg_head."):
            layer = {"fc1": "0", "fc2": "2"}[name.split(".")[1]]
            state[f"model.text_hidden_fcs.0.{layer}.{name.rsplit('.', 1)[1]}"] = tensor
        elif name.startswith("sam."):
            state["model.visual_model." + original_sam_name(name[len("sam."):])] = tensor
        else:
            raise KeyError(name)
    return state


def inv_freq_keys(config: LisaConfig) -> dict[str, torch.Tensor]:
    text = config.vlm["text_config"]
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    inv_freq = 1.0 / (10000.0 ** (torch.arange(0, head_dim, 2).float() / head_dim))
    return {f"model.layers.{i}.self_attn.rotary_emb.inv_freq": inv_freq.clone() for i in range(text["num_hidden_layers"])}


def write_sharded(directory: Path, state: dict[str, torch.Tensor], shards: int, fmt: str) -> None:
    """``pytorch_model-0000i-of-0000n.bin`` (fmt "bin") or safetensors shards, plus the index."""
    total = sum(t.numel() * t.element_size() for t in state.values())
    groups: list[list[str]] = [[] for _ in range(shards)]
    running = 0
    for name, tensor in state.items():  # consecutive keys, about total / shards bytes each
        groups[min(shards - 1, running * shards // max(total, 1))].append(name)
        running += tensor.numel() * tensor.element_size()
    weight_map: dict[str, str] = {}
    stem, suffix = ("pytorch_model", "bin") if fmt == "bin" else ("model", "safetensors")
    for number in range(shards):
        group = {k: state[k].contiguous() for k in groups[number]}
        file_name = f"{stem}-{number + 1:05d}-of-{shards:05d}.{suffix}"
        if fmt == "bin":
            torch.save(group, directory / file_name)
        else:
            save_file(group, str(directory / file_name), metadata={"format": "pt"})
        weight_map.update({k: file_name for k in group})
    _json(directory / f"{stem}.{suffix}.index.json", {"metadata": {"total_size": total}, "weight_map": weight_map})


def write_clip_folder(directory: Path, size: ModelSize, vision_state: dict[str, torch.Tensor]) -> None:
    """A full CLIPModel folder whose vision half holds ``vision_state`` (tower names)."""
    directory.mkdir(parents=True, exist_ok=True)
    clip = CLIPModel(_clip_config(size))
    clip.vision_model.load_state_dict(vision_state)
    clip.save_pretrained(str(directory))
    CLIPImageProcessorPil(
        size={"shortest_edge": size.vision_image_size}, crop_size={"height": size.vision_image_size, "width": size.vision_image_size},
        do_center_crop=True, resample=3, image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    ).save_pretrained(str(directory))


def write_tiny_official(root: str | Path, size: ModelSize | None = None, shards: int = 3, fmt: str = "bin", seed: int = 0) -> TinyOfficial:
    size = size or official_tiny_size()
    root = Path(root)
    directory, clip_dir = root / "LISA-tiny-v1", root / "clip-vit-tiny"
    torch.manual_seed(seed)
    config = tiny_lisa_config(size)
    model = LisaModel(config).eval()
    with torch.no_grad():  # released weights are bf16: make the reference hold bf16-exact values
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.to(torch.bfloat16).float())
    train_sentencepiece(directory, size.vocab_size)
    state = {k: v.to(torch.bfloat16) for k, v in official_state(model).items()}
    state.update({k: v.to(torch.bfloat16) for k, v in inv_freq_keys(config).items()})
    write_sharded(directory, state, shards, fmt)
    _json(directory / "config.json", official_config_json(config))
    tower = {k[len("vlm.model.vision_tower."):]: v for k, v in model.state_dict().items() if k.startswith("vlm.model.vision_tower.")}
    write_clip_folder(clip_dir, size, tower)
    return TinyOfficial(directory, clip_dir, model)


def write_sam_pth(path: str | Path, size: ModelSize | None = None, seed: int = 3) -> SamModel:
    """An original-layout SAM checkpoint (``sam_vit_*.pth`` names); returns the same model."""
    torch.manual_seed(seed)
    sam = SamModel(_sam_config(size or official_tiny_size()))
    state = {original_sam_name(k): v for k, v in sam.state_dict().items() if "shared_embedding" not in k}
    torch.save(state, Path(path))
    return sam


def write_llava_hf_folder(folder: str | Path, tiny: TinyOfficial) -> LlavaForConditionalGeneration:
    """A llava-hf style folder (LLaVA-1.5: transformers 4.x key layout, MLP projector, an
    ``<image>`` token, vocabulary padded past the tokenizer); returns the same model."""
    from lisa.interop.sp_tokenizer import load_llama_tokenizer

    folder = Path(folder)
    tokenizer = load_llama_tokenizer(tiny.directory)
    text = tiny.model.config.vlm_config().text_config
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    text.vocab_size = len(tokenizer) + 3  # padded, like llava-1.5 (32064)
    config = LlavaConfig(vision_config=tiny.model.config.vlm_config().vision_config, text_config=text,
                         image_token_id=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-2,
                         vision_feature_select_strategy="default", tie_word_embeddings=False)
    model = LlavaForConditionalGeneration(config)
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    old_layout = {}
    for name, tensor in model.state_dict().items():
        name = name.replace("model.language_model.", "language_model.model.").replace("lm_head.", "language_model.lm_head.")
        name = name.replace("model.vision_tower.", "vision_tower.vision_model.").replace("model.multi_modal_projector.", "multi_modal_projector.")
        old_layout[name] = tensor.contiguous()
    save_file(old_layout, str(folder / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(folder)
    (folder / "preprocessor_config.json").write_bytes((tiny.clip_dir / "preprocessor_config.json").read_bytes())
    return model


def write_llava_v1_folder(folder: str | Path, tiny: TinyOfficial) -> Path:
    """A LLaVA-v1 folder (LISA's own base, e.g. LLaVA-Lightning-7B-v1-1): the released LISA
    folder without SAM, the seg head and ``[SEG]``; CLIP lives in a separate folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).write_bytes((tiny.directory / name).read_bytes())
    kept = tiny.model.config.seg_token_id  # [SEG] is the last added token: keep every id below it
    _json(folder / "added_tokens.json", {token: kept - 3 + i for i, token in enumerate(ADDED[:3])})
    config = json.loads((tiny.directory / "config.json").read_text())
    for key in ("train_mask_decoder", "out_dim"):
        config.pop(key)
    config["vocab_size"] = kept
    _json(folder / "config.json", config)
    state: dict[str, torch.Tensor] = {}
    for shard in checkpoint_shards(tiny.directory):
        for name, tensor in iter_shard(shard):
            if "visual_model" not in name and "text_hidden_fcs" not in name:
                state[name] = tensor[:kept] if "embed" in name or "lm_head" in name else tensor
    torch.save(state, folder / "pytorch_model.bin")
    return folder


@dataclass
class Fixtures:
    lisa: Path  # released LISA layout (LISA-7B-v1's files)
    clip: Path  # openai/clip-vit-large-patch14's layout
    llava_hf: Path  # llava-hf/llava-1.5-7b-hf's layout
    llava_v1: Path  # LLaVA-Lightning-7B-v1-1's layout
    sam_pth: Path  # sam_vit_h_4b8939.pth's layout


def write_fixtures(root: str | Path, seed: int = 0) -> Fixtures:
    """Every released-layout input the interop commands read, tiny and random, under ``root``."""
    root = Path(root)
    tiny = write_tiny_official(root, seed=seed)
    fixtures = Fixtures(tiny.directory, tiny.clip_dir, root / "llava-1.5-tiny-hf", root / "LLaVA-tiny-v1",
                        root / "sam_vit_tiny.pth")
    torch.manual_seed(seed)
    write_llava_hf_folder(fixtures.llava_hf, tiny)
    write_llava_v1_folder(fixtures.llava_v1, tiny)
    write_sam_pth(fixtures.sam_pth, seed=seed + 3)
    return fixtures


def _json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
