"""Every VLM x every mask backbone (all 9 pairings), built fresh from a training config
(``model.build.vlm`` and ``model.build.sam2`` / ``sam3_tracker``): `lisa train` with validation,
stopped after its first checkpoint and resumed (= an uninterrupted run, bit for bit), export,
`LisaPipeline` with a forced [SEG] -> masks at the image's original size, and `lisa segment`.
Tiny random configs (lisa.model.build defaults), two one-image steps: about 1.5 s a pairing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from lisa.inference.pipeline import LisaPipeline
from lisa.model.mask_backbones import backbone_class
from lisa.train.synthetic import write_synthetic

VLMS = ["llava", "qwen2_5_vl", "qwen3_vl"]
MASKS = ["sam", "sam2", "sam3_tracker"]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("shapes"), images=2, size=48, val_images=1)


def _config(run_dir: Path, data: Path, vlm: str, mask: str) -> dict:
    """configs/smoke.yaml cut to 2 optimizer steps of one image each, a checkpoint per step."""
    import yaml

    config = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml").read_text())
    build: dict = {"vlm": vlm}
    if mask != "sam":
        build[mask] = {}  # lisa.model.build.Sam2Size / Sam3TrackerSize defaults
    config["model"]["build"] = build
    config["model"]["tokenizer_corpus_samples"] = 2
    config.update(run_dir=str(run_dir), save_every=1, val_every=2, max_queries=1)
    config["data"][0].update(dir=str(data), images=2, image_size=48)
    config["optim"].update(max_steps=2, warmup_steps=0, batch_size=1, grad_accum=1, lr=1e-2)
    config["val"].update(dir=str(data), limit=1, batch_size=1)
    return config


def _seg_bias(model) -> None:
    """lm_head biased towards [SEG]: the random model then generates [SEG] at every step."""
    bias = torch.zeros(model.vlm.lm_head.out_features)
    bias[model.config.seg_token_id] = 1e4
    model.vlm.lm_head.bias = torch.nn.Parameter(bias, requires_grad=False)


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("vlm", VLMS)
def test_pairing_builds_trains_resumes_exports_and_segments(vlm: str, mask: str, shapes: Path, tmp_path: Path) -> None:
    from PIL import Image
    from safetensors.torch import load_file

    from lisa.cli import main
    from lisa.train.checkpoint import WEIGHTS_NAME, latest_checkpoint
    from lisa.train.config import config_from_dict
    from lisa.train.export import export
    from lisa.train.trainer import Trainer

    straight = tmp_path / "straight"
    Trainer(config_from_dict(_config(straight, shapes, vlm, mask)), progress=False).fit()
    run = tmp_path / "run"
    stopped = Trainer(config_from_dict(_config(run, shapes, vlm, mask)), progress=False)
    assert type(stopped.unwrapped.mask_backbone) is backbone_class(mask)
    assert stopped.unwrapped.config.vlm["model_type"] == vlm
    stopped.optimizer_step()
    stopped.maybe_save()
    stopped.logger.close()
    resumed = Trainer(config_from_dict(_config(run, shapes, vlm, mask)), resume=True, progress=False)
    assert resumed.state.step == 1
    resumed.fit()
    assert [h["step"] for h in resumed.state.history] == [2]  # validation ran at step 2
    final_a, final_b = latest_checkpoint(straight / "checkpoints"), latest_checkpoint(run / "checkpoints")
    assert final_a.name == final_b.name == "step-00000002"
    a, b = load_file(str(final_a / WEIGHTS_NAME)), load_file(str(final_b / WEIGHTS_NAME))
    assert a.keys() == b.keys() and any(k.startswith("sam.mask_decoder.") for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)

    pipe = LisaPipeline.from_pretrained(export(run, tmp_path / "exported"), device="cpu", dtype="float32", threads=None)
    assert pipe.model.config.sam["model_type"] == mask and pipe.model.config.vlm["model_type"] == vlm
    _seg_bias(pipe.model)
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    result = pipe(image, "the thing", max_new_tokens=2)
    assert result.masks.shape == (2, 40, 60) and result.masks.dtype == bool

    Image.fromarray(image).save(tmp_path / "in.png")
    code = main(["segment", str(tmp_path / "in.png"), "the thing", "--model", str(tmp_path / "exported"),
                 "--out", str(tmp_path / "seg"), "--device", "cpu", "--max-new-tokens", "2"])
    assert code == 0 and (tmp_path / "seg" / "result.json").is_file()


@pytest.mark.parametrize("build,message", [
    ({"vlm": "qwen9"}, r"^x\.yaml: model\.build\.vlm must be one of 'llava', 'qwen2_5_vl', 'qwen3_vl', got 'qwen9'$"),
    ({"sam2": {}, "sam3_tracker": {}}, r"^x\.yaml: model\.build: give at most one of sam2 and sam3_tracker"),
])
def test_a_bad_pairing_is_one_line(build: dict, message: str, tmp_path: Path) -> None:
    from lisa.errors import LisaError
    from lisa.train.config import config_from_dict

    config = _config(tmp_path / "run", tmp_path / "data", "llava", "sam")
    config["model"]["build"] = build
    with pytest.raises(LisaError, match=message):
        config_from_dict(config, "x.yaml")


def test_python_callers_get_the_same_choices() -> None:
    from lisa.errors import LisaError
    from lisa.model.build import ModelSize, build_mask_config

    with pytest.raises(LisaError, match=r"unknown VLM 'qwen9' in model\.build\.vlm; choose one of llava, qwen2_5_vl, qwen3_vl"):
        ModelSize(vlm="qwen9")
    with pytest.raises(LisaError, match="at most one of sam2 and sam3_tracker"):
        build_mask_config(ModelSize(sam2={}, sam3_tracker={}))


def test_init_pairs_a_qwen_folder_with_a_sam2_folder(tmp_path: Path) -> None:
    """The README's example: `lisa init --vlm QWEN2.5-VL_DIR --sam SAM2_DIR --out DIR` (Hugging
    Face folders), then a forced [SEG] -> a mask at the original size."""
    from transformers import Sam2Model

    from lisa.cli import main
    from lisa.model.build import ModelSize, Sam2Size, build_model, build_sam2_config
    from lisa.model.lisa import LisaModel
    from lisa.model.mask_backbones import mask_backbone

    torch.manual_seed(0)
    base, tokenizer, processor = build_model(ModelSize(vlm="qwen2_5_vl"))
    for part in (base.vlm, tokenizer, processor):
        part.save_pretrained(str(tmp_path / "qwen"))
    sam2 = Sam2Model(build_sam2_config(Sam2Size()))
    mask_backbone(sam2).init_from_scratch()
    sam2.save_pretrained(tmp_path / "sam2")
    out = tmp_path / "out"
    assert main(["init", "--vlm", str(tmp_path / "qwen"), "--sam", str(tmp_path / "sam2"), "--out", str(out)]) == 0
    model = LisaModel.from_pretrained(out)
    assert model.config.vlm["model_type"] == "qwen2_5_vl" and model.config.sam["model_type"] == "sam2"
    assert all(torch.equal(model.sam.state_dict()[k], v) for k, v in sam2.state_dict().items())
    pipe = LisaPipeline.from_pretrained(out, device="cpu", dtype="float32", threads=None)
    image = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    assert pipe(image, "the thing", answers="[SEG].").masks.shape == (1, 40, 60)


@pytest.mark.parametrize("name", ["smoke-sam2", "smoke-qwen"])
def test_shipped_pairing_configs_validate(name: str) -> None:
    from lisa.model.build import ModelSize, build_mask_config
    from lisa.train.config import load_config

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / f"{name}.yaml")
    size = ModelSize(**config.model.build)
    assert build_mask_config(size).model_type == "sam2" and size.vlm == {"smoke-sam2": "llava", "smoke-qwen": "qwen2_5_vl"}[name]
