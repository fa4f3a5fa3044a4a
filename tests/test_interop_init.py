"""`lisa init`: a LLaVA base (llava-hf or LLaVA-v1 folder) + SAM -> a fresh LISA folder."""

from __future__ import annotations

import torch

from lisa.cli import main
from lisa.inference.pipeline import LisaPipeline
from lisa.interop.fixtures import write_llava_hf_folder, write_llava_v1_folder, write_sam_pth, write_tiny_official
from lisa.model.lisa import LisaModel
from official_fixtures import make_image


def _sam_pth(path):
    return write_sam_pth(path)


def _llava_hf_folder(tmp_path, tiny):
    folder = tmp_path / "llava-hf"
    return folder, write_llava_hf_folder(folder, tiny)


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
    base = write_llava_v1_folder(tmp_path / "llava-v1", tiny)
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
