"""Stage 2a of the lisa-tiny recipe (configs/tiny-shapes/train_vision_cells.py): it trains the
vision tower and projector on per-cell labels of generated scenes and leaves the rest alone."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from _recipe_scripts import load_recipe_script
from safetensors.torch import load_file

from lisa.data.shapes.cells import labelled_scenes


def _run(model_dir: Path, out: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
         module=None, lr: str = "1e-2") -> dict:
    module = module or _script()
    monkeypatch.setattr(sys, "argv", ["train_vision_cells.py", "--model", str(model_dir), "--out", str(out),
                                      "--steps", "4", "--batch-size", "4", "--train-scenes", "6",
                                      "--val-scenes", "3", "--threads", "1", "--lr", lr, "--checkpoint-every", "2"])
    module.main()
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_trains_only_the_vision_side_and_writes_a_loadable_model(tiny_model_dir: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    from lisa.inference.pipeline import LisaPipeline

    report = _run(tiny_model_dir, tmp_path / "a", monkeypatch, capsys)
    assert set(report["val_cell_accuracy"]) == {"kind", "colour", "column", "row"}
    before, after = load_file(str(tiny_model_dir / "model.safetensors")), load_file(str(tmp_path / "a" / "model.safetensors"))
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all("vision_tower" in k or "multi_modal_projector" in k for k in changed), sorted(changed)[:5]
    assert any("vision_tower" in k for k in changed) and any("multi_modal_projector" in k for k in changed)
    result = LisaPipeline.from_pretrained(tmp_path / "a", device="cpu", dtype="float32")(
        (torch.rand(40, 50, 3) * 255).byte().numpy(), "the red circle")
    assert isinstance(result.text, str)
    # Same seed, same bytes: the stage reproduces.
    _run(tiny_model_dir, tmp_path / "b", monkeypatch, capsys)
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def _script():
    return load_recipe_script("train_vision_cells")


def test_scenes_are_kept_as_the_resized_bytes_and_give_back_the_processors_pixels(tiny_model_dir: Path) -> None:
    from PIL import Image

    from lisa.model.folder import load_preprocessing
    from lisa.model.lisa import LisaModel

    script = _script()
    model = LisaModel.from_pretrained(tiny_model_dir)
    _, processor = load_preprocessing(tiny_model_dir)
    images = labelled_scenes("train", range(5), 0, 8)[0]
    pixels = model.adapter.image_inputs(images, processor).pixels
    store = script.PixelCodes(5, processor.image_mean, processor.image_std)
    store.add(pixels[:2])
    store.add(pixels[2:])
    codes = store.codes
    assert codes.dtype == torch.uint8 and torch.equal(script.lookup(store.table, codes), pixels)
    # Each code is the 8-bit image as the processor resized it (PIL, its resample filter).
    height, width = pixels.shape[-2:]
    resized = [np.asarray(Image.fromarray(image).resize((width, height), processor.resample)) for image in images]
    assert torch.equal(codes, torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2))


def test_pixels_that_are_not_8_bit_values_are_refused(tiny_model_dir: Path) -> None:
    from lisa.model.folder import load_preprocessing
    from lisa.model.lisa import LisaModel

    script = _script()
    model = LisaModel.from_pretrained(tiny_model_dir)
    _, processor = load_preprocessing(tiny_model_dir)
    pixels = model.adapter.image_inputs(labelled_scenes("val", range(2), 0, 8)[0], processor).pixels
    store = script.PixelCodes(2, processor.image_mean, processor.image_std)
    store.add(pixels[:1])
    with pytest.raises(SystemExit, match="not one of 256 values per channel"):
        store.add(pixels[1:] + 1e-3)  # codes that now disagree with the first scene's
    with pytest.raises(SystemExit, match="not one of 256 values per channel"):
        script.PixelCodes(1, processor.image_mean, processor.image_std).add(pixels[:1] + torch.rand_like(pixels[:1]) * 1e-3)


def test_worker_processes_draw_the_same_world(tiny_model_dir: Path) -> None:
    from lisa.model.folder import load_preprocessing
    from lisa.model.lisa import LisaModel

    script = _script()
    model = LisaModel.from_pretrained(tiny_model_dir)
    _, processor = load_preprocessing(tiny_model_dir)
    alone = script.load_world(model, processor, "train", 300, 8, 0, workers=1)
    shared = script.load_world(model, processor, "train", 300, 8, 0, workers=2)
    assert alone.keys() == shared.keys() and all(torch.equal(alone[k], shared[k]) for k in alone)
    assert alone["codes"].shape[0] == 300 and alone["kind"].shape == (300, 64)


def test_an_interrupted_run_continues_to_the_same_bytes(tiny_model_dir: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture) -> None:
    _run(tiny_model_dir, tmp_path / "whole", monkeypatch, capsys)
    script = _script()
    real_losses, calls = script.losses, []

    def dies_at_step_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_losses(*args, **kwargs)

    monkeypatch.setattr(script, "losses", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        _run(tiny_model_dir, tmp_path / "cut", monkeypatch, capsys, script)
    partial = script.partial_dir(tmp_path / "cut")
    assert [c.name for c in (partial / "checkpoints").iterdir()] == ["step-00000002"] and not (tmp_path / "cut").exists()
    capsys.readouterr()
    with pytest.raises(SystemExit, match=r"other settings \(lr\)"):  # a changed run does not continue this one
        _run(tiny_model_dir, tmp_path / "cut", monkeypatch, capsys, _script(), lr="2e-2")
    again = _script()
    resumed_calls = []
    monkeypatch.setattr(again, "losses", lambda *a, **k: resumed_calls.append(1) or real_losses(*a, **k))
    _run(tiny_model_dir, tmp_path / "cut", monkeypatch, capsys, again)
    assert len(resumed_calls) == 3  # steps 3 and 4, then one validation batch: steps 1-2 were not redone
    assert (tmp_path / "cut" / "model.safetensors").read_bytes() == (tmp_path / "whole" / "model.safetensors").read_bytes()
    assert not partial.exists()
