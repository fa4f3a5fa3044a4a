"""Stage 2a of the lisa-tiny recipe (configs/tiny-shapes/train_vision_cells.py): it trains the
vision tower and projector on per-cell labels of generated scenes and leaves the rest alone."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

SCRIPT = Path(__file__).parents[1] / "configs" / "tiny-shapes" / "train_vision_cells.py"


def _run(model_dir: Path, out: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> dict:
    spec = importlib.util.spec_from_file_location("train_vision_cells", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["train_vision_cells.py", "--model", str(model_dir), "--out", str(out),
                                      "--steps", "4", "--batch-size", "4", "--train-scenes", "6",
                                      "--val-scenes", "3", "--threads", "1", "--lr", "1e-2"])
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
