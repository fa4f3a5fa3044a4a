"""Training config: YAML recipes load, unknown keys and wrong paths give clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from lisa.errors import LisaError
from lisa.train.config import config_from_dict, load_config
from lisa.train.schedule import lr_factor

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def smoke_dict() -> dict:
    return yaml.safe_load((CONFIGS / "smoke.yaml").read_text())


@pytest.mark.parametrize("name", ["smoke", "lisa-7b", "lisa-13b"])
def test_shipped_configs_load(name: str) -> None:
    config = load_config(CONFIGS / f"{name}.yaml")
    assert config.optim.betas == [0.9, 0.95]
    assert config.lora.r == 8 and config.lora.alpha == 16 and config.lora.dropout == 0.05


def test_official_numbers() -> None:
    config = load_config(CONFIGS / "lisa-7b.yaml")
    o = config.optim
    assert (o.lr, o.weight_decay, o.warmup_steps, o.clip, o.batch_size, o.grad_accum) == (3e-4, 0.0, 100, 1.0, 2, 10)
    assert [s.rate for s in config.data] == [9, 3, 3, 1]


@pytest.mark.parametrize("path, key", [((), "learning_rate"), (("optim",), "lrr"), (("lora",), "rank")])
def test_unknown_key_is_named(path: tuple[str, ...], key: str) -> None:
    data = smoke_dict()
    target = data
    for part in path:
        target = target[part]
    target[key] = 1
    with pytest.raises(LisaError, match=".".join([*path, key]).replace(".", r"\.")):
        config_from_dict(data)


def test_unknown_model_size_key(tmp_path: Path) -> None:
    from lisa.train.model_setup import build_fresh

    data = smoke_dict()
    data["model"]["build"] = {"text_hiden": 32}
    data["run_dir"] = str(tmp_path)
    with pytest.raises(LisaError, match="model.build.text_hiden"):
        build_fresh(config_from_dict(data), [], tmp_path / "base")


def test_wrong_base_path(tmp_path: Path) -> None:
    from lisa.train.model_setup import prepare_model

    data = smoke_dict()
    data["model"] = {"base": str(tmp_path / "nowhere")}
    config = config_from_dict(data)
    with pytest.raises(LisaError, match="base model folder .*nowhere.* does not exist"):
        prepare_model(config, Path(config.model.base))


def test_base_and_build_exclusive() -> None:
    data = smoke_dict()
    data["model"]["base"] = "somewhere"
    with pytest.raises(LisaError, match="exactly one of 'base'"):
        config_from_dict(data)


def test_run_dir_placeholder() -> None:
    data = smoke_dict()
    data["run_dir"] = "/x/run"
    config = config_from_dict(data)
    assert config.data[0].dir == "/x/run/data" and config.val.dir == "/x/run/data"


def test_lr_schedule() -> None:
    assert lr_factor(0, 100, 5000) == 0.0
    assert lr_factor(50, 100, 5000) == 0.5
    assert lr_factor(100, 100, 5000) == 1.0
    assert lr_factor(2550, 100, 5000) == pytest.approx(0.5)
    assert lr_factor(5000, 100, 5000) == 0.0


def test_cli_names_unknown_key(tmp_path: Path) -> None:
    import argparse

    from lisa.train.commands import register

    data = smoke_dict()
    data["optim"]["lrr"] = 1
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "--config", str(path)])
    with pytest.raises(LisaError, match=r"unknown config key optim\.lrr"):
        args.run(args)


def test_out_of_memory_names_the_knobs() -> None:
    import torch

    from lisa.train.trainer import Trainer

    trainer = Trainer.__new__(Trainer)  # no model needed: the error path only
    trainer.config = config_from_dict(smoke_dict())

    def out_of_memory():
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    trainer.micro_step = out_of_memory
    with pytest.raises(LisaError, match=r"optim\.batch_size.*optim\.grad_accum.*gradient_checkpointing"):
        trainer.optimizer_step()


@pytest.mark.parametrize("path", sorted((CONFIGS / "tiny-shapes").glob("*.yaml")), ids=lambda p: p.stem)
def test_tiny_shapes_configs_load(path: Path) -> None:
    """Every lisa-tiny stage config parses (unknown keys are errors), SAM stages included."""
    from lisa.train.sam_pretrain import is_sam_stage, load_stage_config

    if path.stem.startswith("baseline"):
        from lisa.baselines.train import load_config as load_baseline_config

        load_baseline_config(path)
    elif is_sam_stage(path):
        load_stage_config(path)
    else:
        load_config(path)


def test_val_names_select_jsonl_files(tmp_path: Path) -> None:
    """val.names reaches the loader (an absent file is named), and needs a JSONL val set."""
    from lisa.train.config import ValSection
    from lisa.train.validate import run_validation

    (tmp_path / "val").mkdir()
    (tmp_path / "val" / "referring.jsonl").write_text("")
    with pytest.raises(LisaError, match="no absent.jsonl"):
        run_validation(ValSection(dataset="jsonl", dir=str(tmp_path), names=["absent"]), None, None, None)
    data = yaml.safe_load((CONFIGS / "tiny-shapes" / "3-lisa.yaml").read_text())
    assert data["val"]["names"] == ["referring"]
    data["val"].update(dataset="reasonseg")
    with pytest.raises(LisaError, match="val.names selects JSONL files"):
        config_from_dict(data)


def test_both_training_loops_follow_one_schedule() -> None:
    from lisa.train.simple_loop import LoopSettings, lr_at

    settings = LoopSettings(lr=2e-3, warmup_steps=10, max_steps=110, clip=1.0, save_every=1, keep_last=1, log_every=1)
    for step in (0, 1, 5, 10, 60, 110, 200):
        assert lr_at(step, settings) == 2e-3 * lr_factor(step, 10, 110)
    assert lr_at(0, settings) == 0.0 and lr_at(5, settings) == pytest.approx(1e-3) and lr_at(60, settings) == pytest.approx(1e-3)


def test_model_build_sizes_nest_the_sam_size() -> None:
    from lisa.model.build import ModelSize, SamSize

    size = ModelSize(text_hidden=32, sam={"hidden": 16, "layers": 1, "image_size": 64, "prompt_dim": 16})
    assert isinstance(size.sam, SamSize) and (size.sam.hidden, size.sam.layers, size.sam.window) == (16, 1, 8)
    assert ModelSize().sam == SamSize(hidden=32, layers=2, heads=2, image_size=64, patch=16, window=2,
                                      prompt_dim=32, decoder_mlp=64, decoder_heads=2)
