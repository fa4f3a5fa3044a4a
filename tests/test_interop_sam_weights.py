"""Original SAM names, SAM checkpoints, and sharded lisa-seg weights."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import SamConfig, SamModel, SamVisionConfig

from lisa.cli import main
from lisa.errors import LisaError
from lisa.interop.fixtures import official_tiny_size, _sam_config, original_sam_name
from lisa.interop.sam_original import infer_sam_config, load_sam, sam_key
from lisa.model.lisa import LisaModel
from lisa.model.weights import load_weights, save_weights
from lisa.interop.fixtures import tiny_lisa_config


def _original_state(model: SamModel) -> dict[str, torch.Tensor]:
    return {
        original_sam_name(k): v for k, v in model.state_dict().items()
        if k != "prompt_encoder.shared_embedding.positional_embedding"
    }


def test_vit_h_architecture_from_shapes():
    vit_h = SamConfig(vision_config=SamVisionConfig(
        hidden_size=1280, num_hidden_layers=32, num_attention_heads=16, global_attn_indexes=[7, 15, 23, 31], mlp_dim=5120,
    ))
    with torch.device("meta"):
        model = SamModel(vit_h)
    shapes = {k: tuple(v.shape) for k, v in _original_state(model).items()}
    assert "image_encoder.blocks.31.attn.rel_pos_h" in shapes and "mask_decoder.output_upscaling.3.weight" in shapes
    inferred = infer_sam_config(shapes)
    vision = inferred.vision_config
    assert (vision.hidden_size, vision.num_hidden_layers, vision.num_attention_heads) == (1280, 32, 16)
    assert list(vision.global_attn_indexes) == [7, 15, 23, 31] and vision.window_size == 14
    assert vision.image_size == 1024 and inferred.prompt_encoder_config.mask_input_channels == 16
    hf_names = {sam_key(k) for k in shapes}
    assert hf_names == set(model.state_dict()) - {"prompt_encoder.shared_embedding.positional_embedding"}


def test_sam_pth_and_hf_folder(tmp_path):
    torch.manual_seed(0)
    model = SamModel(_sam_config(official_tiny_size())).eval()
    state = _original_state(model)
    state["pixel_mean"] = torch.zeros(3, 1, 1)  # tolerated if present
    torch.save(state, tmp_path / "sam_vit_t.pth")
    assert main(["convert", "sam", "--src", str(tmp_path / "sam_vit_t.pth"), "--out", str(tmp_path / "hf")]) == 0
    for source in (tmp_path / "sam_vit_t.pth", tmp_path / "hf"):
        _, loaded = load_sam(source)
        for name, tensor in loaded.items():
            assert torch.equal(tensor, model.state_dict()[name]), name
    state["image_encoder.extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(LisaError, match="image_encoder.extra.weight"):
        load_sam(tmp_path / "bad.pth")


def test_sharded_weights_round_trip(tmp_path):
    torch.manual_seed(0)
    model = LisaModel(tiny_lisa_config(official_tiny_size()))
    save_weights(model, tmp_path, max_shard_bytes=200_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2 and not (tmp_path / "model.safetensors").exists()
    other = LisaModel(model.config)
    load_weights(other, tmp_path)
    for name, tensor in other.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name
    save_weights(model, tmp_path)  # back to one file: the shards go
    assert (tmp_path / "model.safetensors").exists() and not (tmp_path / "model.safetensors.index.json").exists()
    save_weights(model, tmp_path, max_shard_bytes=200_000)
    first = sorted(set(index["weight_map"].values()))[0]
    from safetensors.torch import load_file, save_file
    shard = load_file(str(tmp_path / first))
    shard.pop(sorted(shard)[0])
    save_file(shard, str(tmp_path / first))
    with pytest.raises(LisaError, match="missing 1 keys"):
        load_weights(LisaModel(model.config), tmp_path)


def test_quantisation_is_guarded_on_cpu():
    from lisa.interop.quantize import SKIP_MODULES, quantization_config

    with pytest.raises(LisaError, match="CUDA"):
        quantization_config(4, torch.device("cpu"))
    with pytest.raises(LisaError, match="8 or 4"):
        quantization_config(3, torch.device("cpu"))
    assert {"lm_head", "seg_head"} <= set(SKIP_MODULES)
