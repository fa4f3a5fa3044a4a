"""Training in 2 processes (`accelerate launch`, gloo on this CPU), against 1 process.

* 2 processes x micro-batch 1 x accumulation 2 give the loss log and the weights of 1 process x
  micro-batch 2 x accumulation 2 (float tolerance): each rank trains on its own slice of the
  same stream and the gradients are those of the global micro-batch's mean loss.
* A 2-process run killed with SIGKILL (launcher and workers) resumes to the same weights and
  log, bit for bit, as the uninterrupted 2-process run.
* Only the main process writes: one line per step, one RNG file per rank, one "run folder" line.
* Resuming with another number of processes is refused.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
import yaml
from _launch import finish, start
from safetensors.torch import load_file

from lisa.train.checkpoint import WEIGHTS_NAME, latest_checkpoint

ROOT = Path(__file__).resolve().parents[1]
STEPS = 16
LOSSES = ("loss", "ce", "bce", "dice", "lr", "grad_norm")  # the norm: gradients averaged, not summed
pytestmark = pytest.mark.slow  # subprocesses: 2-process launches


def _config(tmp: Path, name: str, batch_size: int) -> Path:
    data = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    data.update(run_dir=str(tmp / name), save_every=2, keep_last=2, val=None, log_every=1)
    data["lora"]["dropout"] = 0.0  # dropout masks depend on the batch's shape, so on the split
    data["optim"].update(max_steps=STEPS, warmup_steps=2, batch_size=batch_size, grad_accum=2)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _train(processes: int, config: Path, resume: bool = False):
    argv = ["train", "--config", str(config), "--no-progress", *(["--resume"] if resume else [])]
    return start(processes, argv, _logs(config, resume))


def _logs(config: Path, resume: bool = False) -> Path:
    return config.with_name(config.stem + (".resume" if resume else ".first"))


def _log(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]


def _weights(run: Path) -> dict[str, torch.Tensor]:
    final = latest_checkpoint(run / "checkpoints")
    assert final is not None and final.name == f"step-{STEPS:08d}"
    return load_file(str(final / WEIGHTS_NAME))


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three runs side by side: 1 x batch 2, 2 x batch 1, and 2 x batch 1 killed and resumed."""
    tmp = tmp_path_factory.mktemp("distributed")
    one, two, killed = _config(tmp, "one", 2), _config(tmp, "two", 1), _config(tmp, "killed", 1)
    started = [(_train(1, one), one), (_train(2, two), two)]
    _kill_after_first_checkpoint(_train(2, killed), tmp / "killed" / "checkpoints")
    finish(_train(2, killed, resume=True), _logs(killed, resume=True))
    for process, config in started:
        finish(process, _logs(config))
    return tmp


def _kill_after_first_checkpoint(process, checkpoints: Path) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if latest_checkpoint(checkpoints) is not None:
            os.killpg(process.pid, signal.SIGKILL)  # the launcher and both workers at once
            break
        time.sleep(0.01)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert int(latest_checkpoint(checkpoints).name.split("-")[1]) < STEPS


def test_two_processes_train_as_one_with_twice_the_batch(runs: Path) -> None:
    one, two = _log(runs / "one"), _log(runs / "two")
    assert [r["step"] for r in one] == [r["step"] for r in two] == list(range(1, STEPS + 1))
    for a, b in zip(one, two):
        for key in LOSSES:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-6), (a["step"], key)
    a, b = _weights(runs / "one"), _weights(runs / "two")
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(b[name], a[name], rtol=0, atol=2e-4, msg=name)
    state = json.loads((latest_checkpoint(runs / "two" / "checkpoints") / "state.json").read_text())
    assert state["position"] == state["samples"] == STEPS * 2 * 2  # 2 ranks x 1 x accumulation 2


def test_killed_two_process_run_resumes_exactly(runs: Path) -> None:
    a, b = _weights(runs / "two"), _weights(runs / "killed")
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].equal(b[name]), name
    straight, resumed = _log(runs / "two"), _log(runs / "killed")
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))
    assert [[r[k] for k in LOSSES] for r in resumed] == [[r[k] for k in LOSSES] for r in straight]


def test_only_the_main_process_writes(runs: Path) -> None:
    run = runs / "two"
    for folder in (run / "checkpoints").iterdir():
        assert sorted(p.name for p in folder.iterdir()) == [
            "manifest.json", "optimizer.pt", "rng-0.json", "rng-0.safetensors", "rng-1.json", "rng-1.safetensors",
            "scheduler.json", "state.json", "trainable.safetensors"]
    assert sorted(p.name for p in run.iterdir()) == ["base", "checkpoints", "config.json", "data", "log.jsonl"]
    out = (runs / "two.first.out").read_text()
    assert out.count("run folder:") == 1
    assert (runs / "two.first.err").read_text().count(f"step {STEPS}/{STEPS}") == 1


def test_resuming_with_another_process_count_is_refused(runs: Path) -> None:
    logs = runs / "one-process-resume"
    process = start(1, ["train", "--config", str(runs / "two.yaml"), "--resume", "--no-progress"], logs)
    process.wait(timeout=120)
    err = Path(f"{logs}.err").read_text()
    assert process.returncode == 2 and "was saved by 2 processes, this run has 1; resume with 2" in err
