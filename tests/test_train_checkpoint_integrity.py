"""Checkpoints carry a sha256 manifest written last; resume verifies it and falls back to the
newest intact checkpoint (saying which and why); both loops share one format and log each step
once; the trainer saves before it validates and checks the val set before step 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from torch import nn

from lisa.errors import LisaError
from lisa.train import checkpoint as ckpt
from lisa.train.simple_loop import LoopSettings, run_loop

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = LoopSettings(lr=1e-2, warmup_steps=2, max_steps=8, clip=1.0, save_every=2, keep_last=3, log_every=1)


class Interrupted(Exception):
    pass


def tiny_module() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))


def make_step_loss(module: nn.Module, stop_at: int | None = None):
    """Batches are a pure function of the step (what run_loop requires); ``stop_at``: interrupt
    the run (as a kill would) when this many steps are done."""
    def step_loss(step: int):
        if step == stop_at:
            raise Interrupted
        generator = torch.Generator().manual_seed(step)
        x = torch.randn(16, 4, generator=generator)
        y = x.sum(-1, keepdim=True)
        loss = (module(x) - y).pow(2).mean() + 0.01 * torch.randn(()).abs()  # uses the RNG: restored on resume
        return loss, {"mse": float(loss.detach())}
    return step_loss


def train(run_dir: Path, max_steps: int = 8, resume: bool = False, stop_at: int | None = None) -> nn.Module:
    module = tiny_module()
    settings = LoopSettings(**{**SETTINGS.__dict__, "max_steps": max_steps})
    run_loop("tiny", run_dir, module, make_step_loss(module, stop_at), settings, resume)
    return module


def weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> dict[str, torch.Tensor]:
    return weights(train(tmp_path_factory.mktemp("straight")))


def flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # inside the last tensor's data: safetensors itself would load it
    path.write_bytes(bytes(data))


# ---- the manifest -------------------------------------------------------------------------
def test_manifest_lists_every_file_with_its_sha256(tmp_path: Path) -> None:
    import hashlib

    train(tmp_path / "run", max_steps=2)
    folder = tmp_path / "run" / "checkpoints" / "step-00000002"
    manifest = json.loads((folder / ckpt.MANIFEST_NAME).read_text())["files"]
    on_disk = {p.name for p in folder.iterdir()} - {ckpt.MANIFEST_NAME}
    assert set(manifest) == on_disk >= {ckpt.WEIGHTS_NAME, ckpt.OPTIMIZER_NAME, ckpt.STATE_NAME, "rng-0.json"}
    for name, entry in manifest.items():
        data = (folder / name).read_bytes()
        assert entry == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert ckpt.verify_checkpoint(folder) is None
    flip_last_byte(folder / ckpt.WEIGHTS_NAME)
    load_file(str(folder / ckpt.WEIGHTS_NAME))  # still loads: only the manifest can tell
    assert "trainable.safetensors differs from the manifest" in ckpt.verify_checkpoint(folder)


# ---- fallback -------------------------------------------------------------------------------
@pytest.mark.parametrize("damage, reason", [
    (flip_last_byte, "trainable.safetensors differs from the manifest (sha256)"),
    (lambda p: p.write_bytes(p.read_bytes()[:-100]), "trainable.safetensors has "),
    (lambda p: p.unlink(), "trainable.safetensors is missing"),
])
def test_damaged_newest_checkpoint_falls_back_and_resumes_exactly(tmp_path: Path, capsys, straight, damage, reason) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupted):
        train(run_dir, stop_at=6)  # killed after the checkpoint of step 6
    damage(run_dir / "checkpoints" / "step-00000006" / ckpt.WEIGHTS_NAME)
    capsys.readouterr()
    resumed = train(run_dir, resume=True)
    said = capsys.readouterr().err
    assert f"checkpoint step-00000006 is damaged ({reason}" in said
    assert "kept as step-00000006.damaged" in said and "falling back to step-00000004" in said
    assert (run_dir / "checkpoints" / "step-00000006.damaged" / ckpt.MANIFEST_NAME).is_file()  # kept, not deleted
    assert_same(weights(resumed), straight)  # trained from step 4 again: the same final weights


def test_every_checkpoint_damaged_is_an_error(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    train(run_dir, max_steps=4)
    for folder in ckpt.list_checkpoints(run_dir / "checkpoints"):
        flip_last_byte(folder / ckpt.OPTIMIZER_NAME)
    with pytest.raises(LisaError, match=r"no intact checkpoint to resume from \(damaged: step-00000004, step-00000002\)"):
        train(run_dir, resume=True)


def test_checkpoint_of_the_old_simple_loop_format_still_resumes(tmp_path: Path, capsys, straight) -> None:
    """Before the formats were one: weights.safetensors, rng.json, state {"step"}, no manifest."""
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupted):
        train(run_dir, stop_at=4)
    for folder in ckpt.list_checkpoints(run_dir / "checkpoints"):
        (folder / ckpt.WEIGHTS_NAME).rename(folder / "weights.safetensors")
        (folder / "rng-0.json").rename(folder / "rng.json")
        (folder / "rng-0.safetensors").rename(folder / "rng.safetensors")
        (folder / ckpt.MANIFEST_NAME).unlink()
        step = json.loads((folder / ckpt.STATE_NAME).read_text())["step"]
        (folder / ckpt.STATE_NAME).write_text(json.dumps({"step": step}))
    assert_same(weights(train(run_dir, resume=True)), straight)
    assert "step-00000004 has no manifest.json (written by an older lisa-seg)" in capsys.readouterr().err


# ---- one log line per step -----------------------------------------------------------------
def test_simple_loop_logs_each_step_once_after_an_interruption(tmp_path: Path, straight) -> None:
    """Step 5 was logged, then the run died before its checkpoint (step 6): on resume from step 4
    it is trained and logged again, once."""
    run_dir = tmp_path / "run"
    with pytest.raises(Interrupted):
        train(run_dir, stop_at=5)  # steps 1..5 logged, checkpoint at 4
    logged = [json.loads(line)["step"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3, 4, 5]
    with (run_dir / "log.jsonl").open("a") as log:
        log.write('{"step": 6, "loss": 0.1')  # a line cut off by the kill
    assert_same(weights(train(run_dir, resume=True)), straight)
    logged = [json.loads(line)["step"] for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert logged == list(range(1, 9))


# ---- the trainer ----------------------------------------------------------------------------
def smoke_config(tmp_path: Path, **changes) -> dict:
    data = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    data.update(run_dir=str(tmp_path / "run"), save_every=3, keep_last=3, val_every=3, log_every=1)
    data["optim"].update(max_steps=3, warmup_steps=1)
    data["val"].update(limit=2, batch_size=2)
    data.update(changes)
    return data


def test_trainer_checks_the_val_set_before_step_1(tmp_path: Path) -> None:
    from lisa.train.config import config_from_dict
    from lisa.train.trainer import Trainer

    data = smoke_config(tmp_path)
    data["val"].update(dataset="jsonl", dir=str(tmp_path / "nowhere"))
    with pytest.raises(LisaError, match="nowhere"):
        Trainer(config_from_dict(data), progress=False)
    assert not (tmp_path / "run" / "base").exists()  # no model was built
    data["val"].update(dir="{run_dir}/data", names=["absent"])
    with pytest.raises(LisaError, match="absent"):
        Trainer(config_from_dict(data), progress=False)


def test_trainer_saves_before_validating_and_validates_on_resume(tmp_path: Path, monkeypatch) -> None:
    from lisa.train.config import config_from_dict
    from lisa.train.trainer import Trainer, train

    config = config_from_dict(smoke_config(tmp_path))

    def broken_validation(self):
        raise RuntimeError("validation failed")

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "validate", broken_validation)
        with pytest.raises(RuntimeError, match="validation failed"):
            train(config, progress=False)
    checkpoint = tmp_path / "run" / "checkpoints" / "step-00000003"
    assert ckpt.verify_checkpoint(checkpoint) is None  # the three steps are kept
    assert json.loads((checkpoint / ckpt.STATE_NAME).read_text())["history"] == []

    train(config_from_dict(smoke_config(tmp_path)), resume=True, progress=False)  # validates step 3 now
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "val_giou" in r] == [3]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    assert (tmp_path / "run" / "best" / ckpt.WEIGHTS_NAME).is_file()


def test_trainer_falls_back_from_a_corrupted_checkpoint_exactly(tmp_path: Path, capsys) -> None:
    """The LISA trainer uses the same verification: a flipped tensor byte in the newest checkpoint
    is found, the run goes on from the previous one and ends on the uninterrupted run's weights."""
    from lisa.train.config import config_from_dict
    from lisa.train.trainer import train

    def config(name: str):
        data = smoke_config(tmp_path / name, val=None)
        data["optim"].update(max_steps=6)
        return config_from_dict(data)

    train(config("straight"), progress=False)
    train(config("damaged"), progress=False)
    checkpoints = tmp_path / "damaged" / "run" / "checkpoints"
    flip_last_byte(checkpoints / "step-00000006" / ckpt.WEIGHTS_NAME)
    capsys.readouterr()
    train(config("damaged"), resume=True, progress=False)
    said = capsys.readouterr().err
    assert "step-00000006 is damaged (trainable.safetensors differs from the manifest" in said
    assert "falling back to step-00000003" in said
    a = load_file(str(tmp_path / "straight" / "run" / "checkpoints" / "step-00000006" / ckpt.WEIGHTS_NAME))
    b = load_file(str(checkpoints / "step-00000006" / ckpt.WEIGHTS_NAME))
    assert_same(a, b)
    steps = [json.loads(line)["step"] for line in (tmp_path / "damaged" / "run" / "log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]

    from lisa.train.export import pick_checkpoint  # export refuses a damaged checkpoint too

    flip_last_byte(checkpoints / "step-00000006" / ckpt.OPTIMIZER_NAME)
    with pytest.raises(LisaError, match=r"step-00000006 is damaged \(optimizer\.pt differs from the manifest"):
        pick_checkpoint(tmp_path / "damaged" / "run", "last")
    assert pick_checkpoint(tmp_path / "damaged" / "run", str(checkpoints / "step-00000003")).name == "step-00000003"
