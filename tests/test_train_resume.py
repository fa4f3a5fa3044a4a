"""A run killed with SIGKILL after a checkpoint and resumed reaches the same weights, bit for bit,
as an uninterrupted run with the same seed (CPU, smoke config)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from lisa.train.checkpoint import WEIGHTS_NAME, latest_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ("import sys; from lisa.train.config import load_config; from lisa.train.trainer import train; "
          "train(load_config(sys.argv[1]), resume=sys.argv[2] == '1', progress=False)")


def _config(tmp: Path, name: str) -> Path:
    data = yaml.safe_load((ROOT / "configs" / "smoke.yaml").read_text())
    data.update(run_dir=str(tmp / name), save_every=3, keep_last=2, val=None, log_every=1)
    data["optim"].update(max_steps=15, warmup_steps=3)
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _start(config: Path, resume: bool) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(config), "1" if resume else "0"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen) -> None:
    _, err = process.communicate(timeout=240)
    assert process.returncode == 0, err[-3000:]


@pytest.mark.slow  # a training subprocess killed and resumed
def test_kill_and_resume_equals_uninterrupted(tmp_path: Path) -> None:
    straight = _start(_config(tmp_path, "straight"), resume=False)
    killed_config = _config(tmp_path, "killed")
    killed = _start(killed_config, resume=False)
    checkpoints = tmp_path / "killed" / "checkpoints"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and killed.poll() is None:
        latest = latest_checkpoint(checkpoints)
        if latest is not None and int(latest.name.split("-")[1]) >= 3:
            killed.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    stopped_at = int(latest_checkpoint(checkpoints).name.split("-")[1])
    assert stopped_at < 15

    _finish(_start(killed_config, resume=True))
    _finish(straight)

    final_a = latest_checkpoint(tmp_path / "straight" / "checkpoints")
    final_b = latest_checkpoint(checkpoints)
    assert final_a.name == final_b.name == "step-00000015"
    a, b = load_file(str(final_a / WEIGHTS_NAME)), load_file(str(final_b / WEIGHTS_NAME))
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].equal(b[name]), name
    # Training really moved the weights away from the start.
    base = load_file(str(tmp_path / "straight" / "base" / "model.safetensors"))
    assert not a["seg_head.fc1.weight"].equal(base["seg_head.fc1.weight"])
    # The resumed log holds each step once.
    steps = [yaml.safe_load(line)["step"] for line in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 16))
    times = [json.loads(line)["time"] for line in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()]
    assert times == sorted(times) and times[0] > 1.7e9  # wall clock, in order across the resume
