"""configs/tiny-shapes/attach_presence_head.py: one model's presence head on another model, every
other weight of that model kept bit for bit; heads that cannot read the model are refused."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from _recipe_scripts import load_recipe_script
from _training import tiny_folder_with_image_read
from safetensors.torch import load_file

from lisa.inference.pipeline import LisaPipeline
from lisa.model.build import save_bundle, write_tiny_model
from lisa.model.presence import PresenceHead

WIDTH, THRESHOLD = 8, 0.7


def _donor(tmp_path: Path) -> Path:
    """A tiny model with a random presence head (threshold 0.7)."""
    folder, _ = tiny_folder_with_image_read(tmp_path / "donor-base")
    pipe = LisaPipeline.from_pretrained(folder, device="cpu", dtype="float32")
    model = pipe.model
    torch.manual_seed(3)
    model.presence_head = PresenceHead.reading(model.seg_head, model.config.hidden_size, WIDTH)
    with torch.no_grad():
        model.presence_head.mean.normal_()
        model.presence_head.std.uniform_(0.5, 2.0)
        model.presence_head.threshold.fill_(THRESHOLD)
    model.config = replace(model.config, presence_head_width=WIDTH)
    save_bundle(tmp_path / "donor", model, pipe.tokenizer, pipe.image_processor)
    return tmp_path / "donor"


def _target(tmp_path: Path) -> Path:
    """The same architecture without a head, every weight moved (a model trained on)."""
    folder, model = tiny_folder_with_image_read(tmp_path / "target")
    torch.manual_seed(5)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    model.save_pretrained(folder)
    return folder


def _attach(monkeypatch: pytest.MonkeyPatch, donor: Path, target: Path, out: Path) -> None:
    monkeypatch.setattr(sys, "argv", ["attach_presence_head.py", "--head-from", str(donor), "--model", str(target),
                                      "--out", str(out)])
    load_recipe_script("attach_presence_head").main()


def test_the_head_is_the_donors_and_every_other_weight_the_models(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    donor, target, out = _donor(tmp_path), _target(tmp_path), tmp_path / "out"
    _attach(monkeypatch, donor, target, out)
    written, head_weights, model_weights = (load_file(folder / "model.safetensors") for folder in (out, donor, target))
    head_keys = {key for key in written if key.startswith("presence_head.")}
    assert head_keys == {key for key in head_weights if key.startswith("presence_head.")} and head_keys
    assert set(written) - head_keys == set(model_weights)
    assert all(torch.equal(written[key], head_weights[key]) for key in head_keys)
    assert all(torch.equal(written[key], model_weights[key]) for key in model_weights)
    assert float(written["presence_head.threshold"]) == pytest.approx(THRESHOLD)
    config = json.loads((out / "lisa_config.json").read_text())
    assert config["presence_head_width"] == WIDTH
    assert {k: v for k, v in config.items() if k != "presence_head_width"} == \
        {k: v for k, v in json.loads((target / "lisa_config.json").read_text()).items() if k != "presence_head_width"}
    loaded = LisaPipeline.from_pretrained(out, device="cpu", dtype="float32").model.presence_head
    assert loaded is not None and float(loaded.threshold) == pytest.approx(THRESHOLD)


def test_a_donor_without_a_head_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = _target(tmp_path)
    with pytest.raises(SystemExit, match="--head-from has no presence head"):
        _attach(monkeypatch, target, target, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_model_whose_seg_head_cannot_be_read_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = write_tiny_model(tmp_path / "plain", seed=0)  # its seg head does not read the image tokens
    with pytest.raises(SystemExit, match="does not read the image tokens"):
        _attach(monkeypatch, _donor(tmp_path), plain, tmp_path / "out")


def test_a_head_sized_for_other_features_is_refused(tmp_path: Path) -> None:
    attach_head = load_recipe_script("attach_presence_head").attach_head
    donor = LisaPipeline.from_pretrained(_donor(tmp_path), device="cpu", dtype="float32")
    features = donor.model.presence_head.mean.shape[0]
    donor.model.presence_head = PresenceHead(features + 1, WIDTH)
    target = LisaPipeline.from_pretrained(_target(tmp_path), device="cpu", dtype="float32")
    with pytest.raises(SystemExit, match=f"reads {features + 1} features.*computes {features}"):
        attach_head(donor, target)
    assert target.model.presence_head is None
