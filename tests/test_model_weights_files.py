"""Weight files get the permissions of the user's umask (safetensors alone writes 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch
from torch import nn

from lisa.model.weights import load_weights, save_weights


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_saved_weights_follow_umask(tmp_path: Path, umask: int, mode: int) -> None:
    model = nn.Linear(3, 2)
    previous = os.umask(umask)
    try:
        save_weights(model, tmp_path)
    finally:
        os.umask(previous)
    written = tmp_path / "model.safetensors"
    assert stat.S_IMODE(written.stat().st_mode) == mode
    loaded = nn.Linear(3, 2)
    load_weights(loaded, tmp_path)
    assert torch.equal(loaded.weight, model.weight)


def test_sharded_weights_follow_umask(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    previous = os.umask(0o022)
    try:
        save_weights(model, tmp_path, max_shard_bytes=300)
    finally:
        os.umask(previous)
    shards = sorted(tmp_path.glob("model-*.safetensors"))
    assert len(shards) >= 2
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o644 for p in shards)
