"""The original SAM key names (facebookresearch/segment-anything) -> transformers ``SamModel``.

Shared by ``sam_vit_{h,l,b}_*.pth`` files and by released LISA checkpoints, whose
``model.visual_model.*`` keys are the original names. The SAM architecture (sizes, depths,
window) is read from the tensor shapes, so ViT-H, ViT-L, ViT-B and tiny test models all load.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from transformers import SamConfig, SamMaskDecoderConfig, SamPromptEncoderConfig, SamVisionConfig

from lisa.errors import LisaError
from lisa.interop.stream import checkpoint_shards, iter_shard, map_tensors, shard_shapes

# Non-persistent in the original (not saved), but tolerated if a file carries them.
IGNORED = {"pixel_mean", "pixel_std"}
HYPERNETWORK_DEPTH = 3  # SAM's per-mask-token MLPs always have 3 layers
DECODER_HEADS = 8  # not recoverable from shapes; SAM uses 8 everywhere

# (pattern on the original name, replacement) in order; the first full match wins.
_RULES: list[tuple[str, str]] = [
    (r"image_encoder\.pos_embed", r"vision_encoder.pos_embed"),
    (r"image_encoder\.patch_embed\.proj\.(weight|bias)", r"vision_encoder.patch_embed.projection.\1"),
    (r"image_encoder\.blocks\.(\d+)\.norm([12])\.(weight|bias)", r"vision_encoder.layers.\1.layer_norm\2.\3"),
    (r"image_encoder\.blocks\.(\d+)\.attn\.(qkv|proj)\.(weight|bias)", r"vision_encoder.layers.\1.attn.\2.\3"),
    (r"image_encoder\.blocks\.(\d+)\.attn\.(rel_pos_[hw])", r"vision_encoder.layers.\1.attn.\2"),
    (r"image_encoder\.blocks\.(\d+)\.mlp\.(lin[12])\.(weight|bias)", r"vision_encoder.layers.\1.mlp.\2.\3"),
    (r"image_encoder\.neck\.0\.weight", r"vision_encoder.neck.conv1.weight"),
    (r"image_encoder\.neck\.1\.(weight|bias)", r"vision_encoder.neck.layer_norm1.\1"),
    (r"image_encoder\.neck\.2\.weight", r"vision_encoder.neck.conv2.weight"),
    (r"image_encoder\.neck\.3\.(weight|bias)", r"vision_encoder.neck.layer_norm2.\1"),
    # the random-Fourier matrix is shared by the prompt encoder and the image-wide PE
    (r"prompt_encoder\.pe_layer\.positional_encoding_gaussian_matrix", r"shared_image_embedding.positional_embedding"),
    (r"prompt_encoder\.point_embeddings\.(\d+)\.weight", r"prompt_encoder.point_embed.\1.weight"),
    (r"prompt_encoder\.(not_a_point_embed|no_mask_embed)\.weight", r"prompt_encoder.\1.weight"),
    (r"prompt_encoder\.mask_downscaling\.0\.(weight|bias)", r"prompt_encoder.mask_embed.conv1.\1"),
    (r"prompt_encoder\.mask_downscaling\.1\.(weight|bias)", r"prompt_encoder.mask_embed.layer_norm1.\1"),
    (r"prompt_encoder\.mask_downscaling\.3\.(weight|bias)", r"prompt_encoder.mask_embed.conv2.\1"),
    (r"prompt_encoder\.mask_downscaling\.4\.(weight|bias)", r"prompt_encoder.mask_embed.layer_norm2.\1"),
    (r"prompt_encoder\.mask_downscaling\.6\.(weight|bias)", r"prompt_encoder.mask_embed.conv3.\1"),
    (r"mask_decoder\.(iou_token|mask_tokens)\.weight", r"mask_decoder.\1.weight"),
    (
        r"mask_decoder\.transformer\.layers\.(\d+)\.(self_attn|cross_attn_token_to_image|cross_attn_image_to_token)"
        r"\.(q_proj|k_proj|v_proj|out_proj)\.(weight|bias)",
        r"mask_decoder.transformer.layers.\1.\2.\3.\4",
    ),
    (r"mask_decoder\.transformer\.layers\.(\d+)\.norm([1-4])\.(weight|bias)", r"mask_decoder.transformer.layers.\1.layer_norm\2.\3"),
    (r"mask_decoder\.transformer\.layers\.(\d+)\.mlp\.(lin[12])\.(weight|bias)", r"mask_decoder.transformer.layers.\1.mlp.\2.\3"),
    (
        r"mask_decoder\.transformer\.final_attn_token_to_image\.(q_proj|k_proj|v_proj|out_proj)\.(weight|bias)",
        r"mask_decoder.transformer.final_attn_token_to_image.\1.\2",
    ),
    (r"mask_decoder\.transformer\.norm_final_attn\.(weight|bias)", r"mask_decoder.transformer.layer_norm_final_attn.\1"),
    (r"mask_decoder\.output_upscaling\.0\.(weight|bias)", r"mask_decoder.upscale_conv1.\1"),
    (r"mask_decoder\.output_upscaling\.1\.(weight|bias)", r"mask_decoder.upscale_layer_norm.\1"),
    (r"mask_decoder\.output_upscaling\.3\.(weight|bias)", r"mask_decoder.upscale_conv2.\1"),
]
_COMPILED = [(re.compile(pattern), replacement) for pattern, replacement in _RULES]
_MLP = re.compile(r"mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head)\.layers\.(\d+)\.(weight|bias)")


def sam_key(name: str, iou_head_depth: int = 3) -> str | None:
    """Original SAM name -> HF SamModel name; None for keys that are deliberately skipped.

    Raises KeyError for a name that is not part of SAM."""
    if name in IGNORED:
        return None
    for pattern, replacement in _COMPILED:
        if pattern.fullmatch(name):
            return pattern.sub(replacement, name)
    match = _MLP.fullmatch(name)
    if match:
        owner, layer, kind = match.group(1), int(match.group(2)), match.group(3)
        depth = iou_head_depth if owner == "iou_prediction_head" else HYPERNETWORK_DEPTH
        return f"mask_decoder.{owner}.{_mlp_layer_name(layer, depth)}.{kind}"
    raise KeyError(name)


def _mlp_layer_name(layer: int, depth: int) -> str:
    """SAM's MLP keeps its layers in one list; HF names the first and last apart."""
    if layer == 0:
        return "proj_in"
    if layer == depth - 1:
        return "proj_out"
    return f"layers.{layer - 1}"


def infer_sam_config(shapes: dict[str, tuple[int, ...]], prefix: str = "") -> SamConfig:
    """The SAM architecture from the original-named tensor shapes (``prefix`` + SAM name)."""
    def shape(name: str) -> tuple[int, ...]:
        if prefix + name not in shapes:
            raise LisaError(f"not a SAM checkpoint: {prefix + name} is missing")
        return shapes[prefix + name]

    blocks = _count(shapes, prefix + r"image_encoder\.blocks\.(\d+)\.norm1\.weight")
    hidden, _, patch, _ = shape("image_encoder.patch_embed.proj.weight")
    grid = shape("image_encoder.pos_embed")[1]
    head_dim = shape("image_encoder.blocks.0.attn.rel_pos_h")[1]
    rel_rows = [shape(f"image_encoder.blocks.{b}.attn.rel_pos_h")[0] for b in range(blocks)]
    global_blocks = [b for b, rows in enumerate(rel_rows) if rows == 2 * grid - 1]
    windows = {(rows + 1) // 2 for b, rows in enumerate(rel_rows) if b not in global_blocks}
    prompt_dim = shape("image_encoder.neck.0.weight")[0]
    iou_depth = _count(shapes, prefix + r"mask_decoder\.iou_prediction_head\.layers\.(\d+)\.weight")
    vision = SamVisionConfig(
        hidden_size=hidden, output_channels=prompt_dim, num_hidden_layers=blocks,
        num_attention_heads=hidden // head_dim, image_size=grid * patch, patch_size=patch,
        window_size=windows.pop() if windows else 14, global_attn_indexes=global_blocks,
        num_pos_feats=shape("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix")[1],
        mlp_dim=shape("image_encoder.blocks.0.mlp.lin1.weight")[0],
    )
    prompt = SamPromptEncoderConfig(
        hidden_size=prompt_dim, image_size=grid * patch, patch_size=patch,
        mask_input_channels=shape("prompt_encoder.mask_downscaling.3.weight")[0],
    )
    decoder = SamMaskDecoderConfig(
        hidden_size=prompt_dim, mlp_dim=shape("mask_decoder.transformer.layers.0.mlp.lin1.weight")[0],
        num_hidden_layers=_count(shapes, prefix + r"mask_decoder\.transformer\.layers\.(\d+)\.norm1\.weight"),
        num_attention_heads=DECODER_HEADS,
        attention_downsample_rate=prompt_dim // shape("mask_decoder.transformer.layers.0.cross_attn_token_to_image.q_proj.weight")[0],
        num_multimask_outputs=shape("mask_decoder.mask_tokens.weight")[0] - 1,
        iou_head_depth=iou_depth,
        iou_head_hidden_dim=shape("mask_decoder.iou_prediction_head.layers.0.weight")[0],
    )
    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def _count(shapes: dict[str, tuple[int, ...]], pattern: str) -> int:
    compiled = re.compile(pattern)
    found = {int(m.group(1)) for m in map(compiled.fullmatch, shapes) if m}
    return max(found) + 1 if found else 0


# ---- whole SAM checkpoints (for `lisa init` and `lisa convert sam`) ---------------------
def load_sam(source: str | Path) -> tuple[SamConfig, dict[str, torch.Tensor]]:
    """A SAM checkpoint as (config, HF-named state dict): an original ``sam_vit_*.pth`` file
    (read with ``weights_only=True``) or a transformers ``sam-vit-*`` folder."""
    source = Path(source)
    if source.is_dir():
        return _load_hf_sam(source)
    if not source.is_file():
        raise LisaError(f"SAM checkpoint {source} not found (give sam_vit_h_4b8939.pth or a sam-vit-* folder)")
    shapes = shard_shapes(source)
    config = infer_sam_config(shapes)
    depth = config.mask_decoder_config.iou_head_depth
    state = map_tensors(iter_shard(source), lambda name: sam_key(name, depth), source, "keys are not SAM keys")
    return config, state


def _load_hf_sam(directory: Path) -> tuple[SamConfig, dict[str, torch.Tensor]]:
    """Any registered mask backbone's transformers folder (SAM, SAM 2, SAM 3 tracker: by config.json's model_type)."""
    from lisa.model.mask_backbones import load_mask_model
    from lisa.model.mask_backbones.registry import folder_model_type

    if not (directory / "config.json").is_file():
        raise LisaError(f"{directory}: not a transformers SAM folder (config.json is missing)")
    kind = folder_model_type(directory) or "sam"
    if kind != "sam":  # transformers' loader maps these checkpoints' key names
        model = load_mask_model(directory)
        return model.config, model.state_dict()
    config = SamConfig.from_pretrained(str(directory))
    state: dict[str, torch.Tensor] = {}
    for path in checkpoint_shards(directory):
        state.update(iter_shard(path))
    # transformers' own SAM checkpoints store the shared PE matrix under both names
    state.pop("prompt_encoder.shared_embedding.positional_embedding", None)
    return config, state



def convert_sam(source: str | Path, out: str | Path) -> Path:
    """An original ``sam_vit_*.pth`` -> a transformers SAM folder (strict load into SamModel)."""
    from transformers import SamModel

    from lisa.model.weights import load_state_strict

    config, state = load_sam(source)
    model = SamModel(config)
    model.tie_weights()
    load_state_strict(model, state)
    model.save_pretrained(str(out))
    return Path(out)
