"""Export: merging LoRA gives a standalone model folder whose masks equal the in-training model's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from lisa.inference.pipeline import LisaPipeline
from lisa.train.config import config_from_dict
from lisa.train.export import export
from lisa.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("seg_head_norm", [None, "batch"])
def test_export_round_trip(tmp_path: Path, seg_head_norm: str | None) -> None:
    data = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    data.update(run_dir=str(tmp_path / "run"), save_every=4, val_every=4)
    data["model"]["seg_head_norm"] = seg_head_norm
    data["optim"].update(max_steps=4, warmup_steps=1, lr=1e-2)
    data["val"]["limit"] = 3
    trainer = Trainer(config_from_dict(data), progress=False)
    trainer.fit()
    assert (tmp_path / "run" / "best" / "trainable.safetensors").is_file()

    out = export(tmp_path / "run", tmp_path / "exported")
    assert not any("lora_" in line for line in (out / "lisa_config.json").read_text().splitlines())
    trained = LisaPipeline(trainer.unwrapped, trainer.tokenizer, trainer.processor)
    standalone = LisaPipeline.from_pretrained(out, device="cpu", dtype="float32")
    images = sorted((tmp_path / "run" / "data" / "val").glob("val_*[0-9].png"))[:2]
    queries = ["the red square", "the blue circle"]
    for a, b in zip(trained(images, queries, answers="Sure, [SEG]."), standalone(images, queries, answers="Sure, [SEG].")):
        assert a.masks.shape == b.masks.shape == (1, 64, 64)
        assert np.array_equal(a.masks, b.masks)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    # LoRA changed something: the merged q_proj differs from the base.
    from safetensors.torch import load_file

    key = "vlm.model.language_model.layers.0.self_attn.q_proj.weight"
    merged, base = load_file(str(out / "model.safetensors")), load_file(str(tmp_path / "run" / "base" / "model.safetensors"))
    assert not merged[key].equal(base[key])
    if seg_head_norm is None:
        assert set(merged) == set(base)
        return
    # The rebuilt head's norm and its running statistics (updated by training) are exported.
    assert standalone.model.config.seg_head_norm == "batch"
    assert set(merged) - set(base) == {f"seg_head.norm.{n}" for n in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    assert int(merged["seg_head.norm.num_batches_tracked"]) > 0 and merged["seg_head.norm.running_mean"].abs().sum() > 0


def test_export_command_line_parses_run_folder(tmp_path, capsys) -> None:
    """`lisa export --run R` must not collide with the CLI's own dispatch attribute."""
    from lisa.cli import main

    code = main(["export", "--run", str(tmp_path / "missing-run"), "--out", str(tmp_path / "out")])
    assert code == 2  # a clear LisaError about the missing run, not a TypeError
    assert "error:" in capsys.readouterr().err
