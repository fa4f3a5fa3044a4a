"""The shipped Accelerate configs as `accelerate launch` reads them, DeepSpeed ZeRO-2 through the
trainer's checkpoint code (when DeepSpeed is installed), FSDP2 sharding of LISA on 2 CPU
processes, and the launches lisa refuses."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _launch import ACCELERATE, finish, free_port, start
from safetensors.torch import load_file

from lisa.errors import LisaError
from lisa.train.checkpoint import WEIGHTS_NAME, latest_checkpoint

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "accelerate"


def _launch_env(config: Path) -> dict[str, str]:
    """The environment `accelerate launch --config_file CONFIG` gives its processes."""
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

    args, defaults, _ = _validate_launch_command(launch_command_parser().parse_args(["--config_file", str(config), "x.py"]))
    if args.use_deepspeed:
        args.deepspeed_fields_from_accelerate_config = ",".join(defaults.deepspeed_config)
        return prepare_deepspeed_cmd_env(args)[1]
    return prepare_multi_gpu_env(args)


def test_fsdp_config_shards_the_three_towers(monkeypatch: pytest.MonkeyPatch) -> None:
    from accelerate.utils import FullyShardedDataParallelPlugin
    from transformers.models.clip import modeling_clip
    from transformers.models.llama import modeling_llama
    from transformers.models.sam import modeling_sam

    for key, value in _launch_env(CONFIGS / "fsdp.yaml").items():
        monkeypatch.setenv(key, value)
    plugin = FullyShardedDataParallelPlugin()
    assert plugin.fsdp_version == 2 and plugin.reshard_after_forward is True
    names = plugin.transformer_cls_names_to_wrap
    assert names == ["LlamaDecoderLayer", "CLIPEncoderLayer", "SamVisionLayer"]
    for module, name in zip((modeling_llama, modeling_clip, modeling_sam), names):
        assert hasattr(module, name)  # the classes transformers builds LISA's towers from


def test_deepspeed_config_matches_the_recipes(monkeypatch: pytest.MonkeyPatch) -> None:
    from accelerate.utils import DeepSpeedPlugin

    for key, value in _launch_env(CONFIGS / "deepspeed_zero2.yaml").items():
        monkeypatch.setenv(key, value)
    ds = DeepSpeedPlugin().deepspeed_config
    recipe = yaml.safe_load((ROOT / "configs" / "lisa-7b.yaml").read_text())["optim"]
    assert ds["zero_optimization"]["stage"] == 2
    assert ds["gradient_accumulation_steps"] == recipe["grad_accum"] and ds["gradient_clipping"] == recipe["clip"]


def test_multi_cpu_config_launches_torchrun_without_sharding() -> None:
    env = _launch_env(CONFIGS / "multi_cpu.yaml")
    assert "ACCELERATE_USE_FSDP" not in env and "ACCELERATE_USE_DEEPSPEED" not in env


@pytest.mark.parametrize("flag", ["ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"])
def test_sharding_engines_are_refused_on_a_cpu_launch(monkeypatch: pytest.MonkeyPatch, flag: str) -> None:
    from lisa.train.config import load_config
    from lisa.train.strategy import check_launch

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv(flag, "true")
    with pytest.raises(LisaError, match="needs GPUs"):
        check_launch(load_config(ROOT / "configs" / "smoke.yaml"))


def _deepspeed_config(tmp: Path) -> Path:
    """ZeRO-2 in one process, fp32 (DeepSpeed's CPU accelerator)."""
    data = yaml.safe_load((CONFIGS / "deepspeed_zero2.yaml").read_text())
    data.update(num_processes=1, mixed_precision="no")
    data["deepspeed_config"]["gradient_accumulation_steps"] = 2
    path = tmp / "accelerate-zero2.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _train_config(tmp: Path, name: str) -> Path:
    data = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    data.update(run_dir=str(tmp / name), save_every=2, keep_last=5, val=None, log_every=1)
    data["lora"]["dropout"] = 0.0
    data["optim"].update(max_steps=4, warmup_steps=1, batch_size=2, grad_accum=2)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _zero2(deepspeed: Path, config: Path, resume: bool) -> None:
    command = [str(ACCELERATE), "launch", "--config_file", str(deepspeed), "--main_process_port", str(free_port()),
               "-m", "lisa.cli", "train", "--config", str(config), "--no-progress", *(["--resume"] if resume else [])]
    logs = config.with_name(config.stem + ("-resume" if resume else ""))
    finish(start(1, [], logs, command=command), logs)


@pytest.mark.slow  # DeepSpeed builds a small op with ninja on first use
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="DeepSpeed is not installed (docs/testing.md)")
def test_deepspeed_zero2_checkpoints_resume_exactly(tmp_path: Path) -> None:
    deepspeed, config, plain = _deepspeed_config(tmp_path), _train_config(tmp_path, "zero2"), _train_config(tmp_path, "plain")
    _zero2(deepspeed, config, resume=False)
    checkpoints = tmp_path / "zero2" / "checkpoints"
    final = checkpoints / "step-00000004"
    assert (final / "deepspeed").is_dir() and not (final / "optimizer.pt").exists()  # the engine's own state
    straight = load_file(str(final / WEIGHTS_NAME))
    shutil.rmtree(final)  # as if killed after step 2's checkpoint
    _zero2(deepspeed, config, resume=True)
    resumed = load_file(str(latest_checkpoint(checkpoints) / WEIGHTS_NAME))
    assert all(straight[k].equal(resumed[k]) for k in straight)
    finish(start(1, ["train", "--config", str(plain), "--no-progress"], tmp_path / "plain"), tmp_path / "plain")
    reference = load_file(str(latest_checkpoint(tmp_path / "plain" / "checkpoints") / WEIGHTS_NAME))
    for name in reference:  # ZeRO-2's optimizer and clipping are DeepSpeed's own: equal to float rounding
        assert (straight[name] - reference[name]).abs().max() < 1e-4, name


@pytest.mark.slow  # 2 processes under torchrun
def test_fsdp2_trains_lora_with_frozen_parts_and_gathers_whole_tensors(tmp_path: Path) -> None:
    """torch's fully_shard on gloo, as configs/accelerate/fsdp.yaml wraps (Accelerate itself
    will not start FSDP without GPUs): both processes train one batch, so the sharded model
    must follow an unsharded copy; the checkpoint's gather gives the whole trainable tensors."""
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [str(torchrun), "--nproc_per_node", "2", "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
               str(ROOT / "tests" / "_fsdp2_worker.py"), str(tmp_path)]
    done = subprocess.run(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "fsdp2.json").read_text())
    assert report["losses"]["fsdp"] == pytest.approx(report["losses"]["plain"], rel=1e-6)
    assert report["names_equal"] and report["max_diff"] < 1e-6 and report["moved"] > 1e-3
    assert report["trainable_sharded"] > 0 and report["sharded_parameters"] > report["trainable_sharded"]
