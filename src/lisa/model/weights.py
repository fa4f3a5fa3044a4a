"""Weights on disk: safetensors only, strict key matching, aliased (tied) tensors saved once.

Two layouts, as Hugging Face writes them: one ``model.safetensors``, or shards
``model-0000i-of-0000n.safetensors`` listed in ``model.safetensors.index.json`` (what
``lisa convert`` writes for big checkpoints). Sharded folders are loaded one shard at a time.
A damaged file, or weights of another model (other keys, other shapes), is one LisaError that
names the file and says what to do.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
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
        try:
            names = dict.fromkeys(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values())
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise LisaError(f"{index} is damaged (not JSON with a 'weight_map' of tensor -> shard file); "
                            "copy or download the model folder again") from None
        return [directory / str(name) for name in names]
    if (directory / WEIGHTS_NAME).is_file():
        return [directory / WEIGHTS_NAME]
    raise LisaError(f"{directory}: neither {WEIGHTS_NAME} nor {INDEX_NAME} is present")


def read_safetensors(path: Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The tensors of one file; a truncated or corrupt file is a LisaError naming it."""
    try:
        return load_file(str(path), device=str(device))
    except SafetensorError as error:
        raise LisaError(f"{path} is damaged or incomplete ({error}); the copy or download was probably "
                        "cut short: fetch the file again") from None


def load_weights(model: nn.Module, directory: Path, device: str | torch.device = "cpu") -> None:
    """Load every key (shard by shard); a missing or unexpected key is an error that lists them."""
    files = weight_files(directory)
    for path in files:
        if not path.is_file():
            raise LisaError(f"{directory}: shard {path.name} is missing")
    source = files[0] if len(files) == 1 else directory / INDEX_NAME
    if len(files) == 1:
        load_state_strict(model, read_safetensors(files[0], device), source)
        return
    expected = model.state_dict()
    seen: set[str] = set()
    unexpected: list[str] = []
    for path in files:
        shard = read_safetensors(path, device)
        unexpected += sorted(set(shard) - set(expected))
        seen.update(shard)
        if not unexpected:
            check_shapes(expected, shard, path)
            model.load_state_dict(shard, strict=False)
        del shard
    check_keys(set(expected) - tied_names(model), seen, unexpected, source)


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path = "checkpoint") -> None:
    """Load every key; a missing or unexpected key, or a tensor of another shape, is an error."""
    expected = model.state_dict()
    check_keys(set(expected) - tied_names(model), set(state), sorted(set(state) - set(expected)), source)
    check_shapes(expected, state, source)
    model.load_state_dict(state, strict=False)


def check_keys(required: set[str], found: set[str], unexpected: list[str], source: str | Path = "checkpoint") -> None:
    missing = sorted(required - found)
    if missing or unexpected:
        raise LisaError(
            f"{source} does not hold this model's weights: missing {len(missing)} keys {missing[:10]}, "
            f"unexpected {len(unexpected)} keys {unexpected[:10]}; the weights come from another model "
            "(keep each model.safetensors with its own lisa_config.json; `lisa convert` for released weights)"
        )


def check_shapes(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor], source: str | Path) -> None:
    """Same names but other shapes: weights of another model size."""
    wrong = [(k, tuple(v.shape), tuple(expected[k].shape)) for k, v in found.items()
             if k in expected and v.shape != expected[k].shape]
    if wrong:
        name, got, want = wrong[0]
        raise LisaError(
            f"{source} holds weights of another model size: {len(wrong)} tensors have other shapes, e.g. "
            f"{name} is {list(got)} in the file but {list(want)} in the model its lisa_config.json describes; "
            "keep each model.safetensors with its own lisa_config.json"
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
