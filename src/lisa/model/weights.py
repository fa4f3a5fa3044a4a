"""Weights on disk: safetensors only, strict key matching, aliased (tied) tensors saved once.

Two layouts, as Hugging Face writes them: one ``model.safetensors``, or shards
``model-0000i-of-0000n.safetensors`` listed in ``model.safetensors.index.json`` (what
``lisa convert`` writes for big checkpoints). Sharded folders are loaded one shard at a time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lisa.errors import LisaError

WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"


def write_safetensors(tensors: dict[str, torch.Tensor], path: Path | str,
                      metadata: dict[str, str] | None = None) -> None:
    """``safetensors.save_file``, but the file gets the permissions the user's umask gives
    (safetensors creates it 0600, so a model folder shared with a group was unreadable)."""
    save_file(tensors, str(path), metadata=metadata)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def save_weights(model: nn.Module, directory: Path, max_shard_bytes: int | None = None) -> None:
    """One file, or shards of at most ``max_shard_bytes`` (a tensor is never split)."""
    tied = tied_names(model)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k not in tied}
    _remove_stale(directory)
    size = sum(t.numel() * t.element_size() for t in state.values())
    if max_shard_bytes is None or size <= max_shard_bytes:
        write_safetensors(state, directory / WEIGHTS_NAME, metadata={"format": "pt"})
        return
    groups = _split(state, max_shard_bytes)
    weight_map: dict[str, str] = {}
    for number, group in enumerate(groups, start=1):
        name = f"model-{number:05d}-of-{len(groups):05d}.safetensors"
        write_safetensors(group, directory / name, metadata={"format": "pt"})
        weight_map.update({key: name for key in group})
    write_index(directory, weight_map, size)


def write_index(directory: Path, weight_map: dict[str, str], total_size: int) -> None:
    index = {"metadata": {"total_size": total_size}, "weight_map": dict(sorted(weight_map.items()))}
    (directory / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n")


def weight_files(directory: Path) -> list[Path]:
    """The safetensors files of a lisa-seg folder (the shards in index order, or the one file)."""
    index = directory / INDEX_NAME
    if index.is_file():
        names = dict.fromkeys(json.loads(index.read_text())["weight_map"].values())
        return [directory / name for name in names]
    if (directory / WEIGHTS_NAME).is_file():
        return [directory / WEIGHTS_NAME]
    raise LisaError(f"{directory}: neither {WEIGHTS_NAME} nor {INDEX_NAME} is present")


def load_weights(model: nn.Module, directory: Path, device: str | torch.device = "cpu") -> None:
    """Load every key (shard by shard); a missing or unexpected key is an error that lists them."""
    files = weight_files(directory)
    for path in files:
        if not path.is_file():
            raise LisaError(f"{directory}: shard {path.name} is missing")
    if len(files) == 1:
        load_state_strict(model, load_file(str(files[0]), device=str(device)))
        return
    expected = set(model.state_dict())
    seen: set[str] = set()
    unexpected: list[str] = []
    for path in files:
        shard = load_file(str(path), device=str(device))
        unexpected += sorted(set(shard) - expected)
        seen.update(shard)
        if not unexpected:
            model.load_state_dict(shard, strict=False)
        del shard
    check_keys(expected - tied_names(model), seen, unexpected)


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load every key; a missing or unexpected key is an error that lists them."""
    expected = set(model.state_dict())
    check_keys(expected - tied_names(model), set(state), sorted(set(state) - expected))
    model.load_state_dict(state, strict=False)


def check_keys(required: set[str], found: set[str], unexpected: list[str]) -> None:
    missing = sorted(required - found)
    if missing or unexpected:
        raise LisaError(
            f"checkpoint does not match the model: missing {len(missing)} keys {missing[:10]}, "
            f"unexpected {len(unexpected)} keys {unexpected[:10]}"
        )


def tied_names(model: nn.Module) -> set[str]:
    """State-dict names that alias an earlier parameter (e.g. lm_head tied to the embeddings)."""
    seen: set[int] = set()
    tied = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            tied.add(name)
        seen.add(id(tensor))
    return tied


def _split(state: dict[str, torch.Tensor], max_bytes: int) -> list[dict[str, torch.Tensor]]:
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key, tensor in state.items():
        nbytes = tensor.numel() * tensor.element_size()
        if groups[-1] and size + nbytes > max_bytes:
            groups.append({})
            size = 0
        groups[-1][key] = tensor
        size += nbytes
    return groups


def _remove_stale(directory: Path) -> None:
    """A folder holds one layout: drop the other one's files before writing."""
    index = directory / INDEX_NAME
    if index.is_file():
        for name in set(json.loads(index.read_text())["weight_map"].values()):
            (directory / name).unlink(missing_ok=True)
        index.unlink()
    (directory / WEIGHTS_NAME).unlink(missing_ok=True)
