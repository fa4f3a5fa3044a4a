"""configs/tiny-shapes/sharpen_vision_view.py: the vision tower sees the image at a larger view with
proportionally larger patches, and computes what the old tower computed on the image box-downsampled
to the old view."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from _recipe_scripts import load_recipe_script


def _script():
    return load_recipe_script("sharpen_vision_view")  # its folder on the path: it imports a sibling


def test_the_sharpened_kernel_applies_the_old_one_to_block_means() -> None:
    torch.manual_seed(0)
    kernel = torch.randn(5, 3, 4, 4)
    image = torch.randn(2, 3, 24, 24)
    sharp = F.conv2d(image, _script().sharpened_kernel(kernel, 3), stride=12)
    expected = F.conv2d(F.avg_pool2d(image, 3), kernel, stride=4)
    assert sharp.shape == expected.shape == (2, 5, 2, 2)
    torch.testing.assert_close(sharp, expected, rtol=1e-5, atol=1e-5)


def test_the_saved_model_sees_twice_the_view_on_the_same_token_grid(tiny_model_dir: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture) -> None:
    from lisa.model.config import LisaConfig
    from lisa.model.folder import load_preprocessing
    from lisa.model.lisa import LisaModel
    from lisa.model.vlms.base import VlmImages

    old = LisaConfig.load(tiny_model_dir).vlm["vision_config"]
    monkeypatch.setattr(sys, "argv", ["sharpen_vision_view.py", "--model", str(tiny_model_dir), "--out",
                                      str(tmp_path / "sharp"), "--image-size", str(2 * old["image_size"])])
    _script().main()
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["patch"] == [old["patch_size"], 2 * old["patch_size"]]

    new = LisaConfig.load(tmp_path / "sharp")
    assert (new.vlm["vision_config"]["image_size"], new.vlm["vision_config"]["patch_size"]) == (
        2 * old["image_size"], 2 * old["patch_size"])
    assert new.num_image_tokens == LisaConfig.load(tiny_model_dir).num_image_tokens
    _, processor = load_preprocessing(tmp_path / "sharp")
    assert dict(processor.size) == {"height": 2 * old["image_size"], "width": 2 * old["image_size"]}

    # Known-correct output: the old tower on the 2x2 block means of the new view's pixels.
    before, after = LisaModel.from_pretrained(tiny_model_dir), LisaModel.from_pretrained(tmp_path / "sharp")
    pixels = torch.randn(2, 3, 2 * old["image_size"], 2 * old["image_size"])
    with torch.no_grad():
        expected = torch.stack(before.adapter.image_features(before.vlm, VlmImages(F.avg_pool2d(pixels, 2))))
        sharp = torch.stack(after.adapter.image_features(after.vlm, VlmImages(pixels)))
    torch.testing.assert_close(sharp, expected, rtol=1e-4, atol=1e-5)
    # Everything but the patch kernel is the old model's.
    old_weights, new_weights = before.state_dict(), after.state_dict()
    assert old_weights.keys() == new_weights.keys()
    differ = {k for k in old_weights if old_weights[k].shape != new_weights[k].shape
              or not torch.equal(old_weights[k], new_weights[k])}
    assert differ == {"vlm.model.vision_tower.embeddings.patch_embedding.weight"}


def test_a_view_that_is_not_a_multiple_is_refused(tiny_model_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from lisa.model.config import LisaConfig

    size = LisaConfig.load(tiny_model_dir).vlm["vision_config"]["image_size"]
    monkeypatch.setattr(sys, "argv", ["sharpen_vision_view.py", "--model", str(tiny_model_dir), "--out",
                                      str(tmp_path / "sharp"), "--image-size", str(size + 1)])
    with pytest.raises(SystemExit, match="multiple"):
        _script().main()
    assert not (tmp_path / "sharp").exists()
