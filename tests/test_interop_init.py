"""`lisa init`: a LLaVA base (llava-hf or LLaVA-v1 folder) + SAM -> a fresh LISA folder."""

from __future__ import annotations

import json
import shutil

import torch
from transformers import LlavaConfig, LlavaForConditionalGeneration, SamModel

from lisa.cli import main
from lisa.inference.pipeline import LisaPipeline
from lisa.interop.fixtures import TinySize, _sam_config, original_sam_name, write_tiny_official
from lisa.interop.sp_tokenizer import load_llama_tokenizer
from lisa.model.lisa import LisaModel
from official_fixtures import make_image


def _sam_pth(path):
    torch.manual_seed(3)
    sam = SamModel(_sam_config(TinySize()))
    state = {original_sam_name(k): v for k, v in sam.state_dict().items() if "shared_embedding" not in k}
    torch.save(state, path)
    return sam


def _llava_hf_folder(tmp_path, tiny):
    """A llava-hf style folder (4.x key layout, MLP projector, <image> token)."""
    tokenizer = load_llama_tokenizer(tiny.directory)
    folder = tmp_path / "llava-hf"
    text = tiny.model.config.vlm_config().text_config
    tokenizer.add_tokens(["<image>"], special_tokens=True)
    text.vocab_size = len(tokenizer) + 3  # padded, like llava-1.5 (32064)
    config = LlavaConfig(vision_config=tiny.model.config.vlm_config().vision_config, text_config=text,
                         image_token_id=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-2,
                         vision_feature_select_strategy="default", tie_word_embeddings=False)
    model = LlavaForConditionalGeneration(config)
    folder.mkdir()
    config.save_pretrained(folder)
    old_layout = {}
    for name, tensor in model.state_dict().items():
        name = name.replace("model.language_model.", "language_model.model.").replace("lm_head.", "language_model.lm_head.")
        name = name.replace("model.vision_tower.", "vision_tower.vision_model.").replace("model.multi_modal_projector.", "multi_modal_projector.")
        old_layout[name] = tensor.contiguous()
    from safetensors.torch import save_file
    save_file(old_layout, str(folder / "model.safetensors"), metadata={"format": "pt"})
    tokenizer.save_pretrained(folder)
    shutil.copy(tiny.clip_dir / "preprocessor_config.json", folder)
    return folder, model


def test_init_from_llava_hf(tmp_path):
    tiny = write_tiny_official(tmp_path / "official")
    folder, llava = _llava_hf_folder(tmp_path, tiny)
    sam = _sam_pth(tmp_path / "sam.pth")
    out = tmp_path / "out"
    assert main(["init", "--vlm", str(folder), "--sam", str(tmp_path / "sam.pth"), "--out", str(out)]) == 0
    model = LisaModel.from_pretrained(out)
    assert model.config.projector == "mlp" and model.config.image_start_id is None
    assert model.config.seg_token_id == 403 and model.config.image_token_id == 404  # [SEG] already present here
    for name, tensor in llava.state_dict().items():
        if "embed_tokens" in name or "lm_head" in name:
            continue
        assert torch.equal(model.vlm.state_dict()[name], tensor), name
    assert torch.equal(model.sam.mask_decoder.iou_token.weight, sam.mask_decoder.iou_token.weight)
    result = LisaPipeline.from_pretrained(out, device="cpu", dtype="fp32")(make_image(), "the dog", answers="[SEG].")
    assert result.masks.shape == (1, 48, 40)


def test_init_from_llava_v1(tmp_path):
    tiny = write_tiny_official(tmp_path / "official", shards=1)
    base = tmp_path / "llava-v1"
    base.mkdir()
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(tiny.directory / name, base)
    (base / "added_tokens.json").write_text(json.dumps({"<im_patch>": 400, "<im_start>": 401, "<im_end>": 402}))
    config = json.loads((tiny.directory / "config.json").read_text())
    for key in ("train_mask_decoder", "out_dim"):
        config.pop(key)
    config["vocab_size"] = 403
    (base / "config.json").write_text(json.dumps(config))
    state = torch.load(tiny.directory / "pytorch_model-00001-of-00001.bin", weights_only=True)
    state = {k: (v[:403] if "embed" in k or "lm_head" in k else v) for k, v in state.items()
             if "visual_model" not in k and "text_hidden_fcs" not in k}
    torch.save(state, base / "pytorch_model.bin")
    _sam_pth(tmp_path / "sam.pth")
    out = tmp_path / "out"
    argv = ["init", "--vlm", str(base), "--sam", str(tmp_path / "sam.pth"), "--out", str(out)]
    assert main(argv) == 2  # needs --vision-tower
    assert main(argv + ["--vision-tower", str(tiny.clip_dir)]) == 0
    model = LisaModel.from_pretrained(out)
    assert model.config.seg_token_id == 403 and model.config.projector == "linear"
    assert model.config.strip_text_around_tokens and model.config.image_start_id == 401
    expected = tiny.model.vlm.model.language_model.embed_tokens.weight[:403]
    assert torch.equal(model.vlm.model.language_model.embed_tokens.weight[:403], expected)
