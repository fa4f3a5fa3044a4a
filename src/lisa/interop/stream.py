"""Checkpoints read and written one shard at a time, so that peak memory stays near one shard.

Reads every layout Hugging Face writes: ``model.safetensors``, ``model-*-of-*.safetensors`` with
``model.safetensors.index.json``, ``pytorch_model.bin`` and ``pytorch_model-*.bin`` with
``pytorch_model.bin.index.json``. Pickle files are opened with ``weights_only=True`` (and
memory-mapped), never with arbitrary code execution.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import torch
from safetensors import safe_open

from lisa.errors import LisaError
from lisa.model.weights import write_safetensors

_LAYOUTS = (
    ("model.safetensors.index.json", "model.safetensors"),
    ("pytorch_model.bin.index.json", "pytorch_model.bin"),
)


def checkpoint_shards(directory: str | Path) -> list[Path]:
    """The weight files of a checkpoint folder, in index order (safetensors preferred)."""
    directory = Path(directory)
    for index_name, single_name in _LAYOUTS:
        index = directory / index_name
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            files = list(dict.fromkeys(weight_map.values()))
            missing = [name for name in files if not (directory / name).is_file()]
            if missing:
                raise LisaError(f"{index}: shard files missing: {missing}")
            return [directory / name for name in files]
        if (directory / single_name).is_file():
            return [directory / single_name]
    raise LisaError(
        f"{directory}: no weights found (expected model.safetensors[.index.json] or pytorch_model.bin[.index.json])"
    )


def _load_pickle(path: Path) -> dict[str, torch.Tensor]:
    import pickle

    try:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # legacy (non-zip) pickle files cannot be memory-mapped
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as error:
        raise LisaError(f"{path} is not a readable PyTorch weight file ({type(error).__name__}: "
                        f"{str(error).splitlines()[0][:200]}); check that the download is complete") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise LisaError(f"{path}: expected a state dict, found {type(state).__name__}")
    return state


def iter_shard(path: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """(name, tensor) pairs of one weight file; safetensors tensors are read one by one."""
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as handle:
            for name in handle.keys():
                yield name, handle.get_tensor(name)
        return
    state = _load_pickle(path)
    for name in list(state):
        yield name, state.pop(name)


def map_tensors(
    tensors: Iterator[tuple[str, torch.Tensor]], key_map, source: object, what: str = "unexpected keys"
) -> dict[str, torch.Tensor]:
    """Rename every tensor with ``key_map`` (None: skip on purpose; KeyError: an unknown key).
    Unknown keys are an error that lists them, never silently dropped."""
    state: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for name, tensor in tensors:
        try:
            target = key_map(name)
        except KeyError:
            unknown.append(name)
            continue
        if target is not None:
            state[target] = tensor
    if unknown:
        raise LisaError(f"{source}: {len(unknown)} {what}: {unknown[:10]}")
    return state


def shard_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor shapes of one weight file without reading the data."""
    if path.suffix == ".safetensors":
        with safe_open(str(path), framework="pt") as handle:
            return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}
    return {name: tuple(tensor.shape) for name, tensor in _load_pickle(path).items()}


def checkpoint_shapes(directory: str | Path) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    for path in checkpoint_shards(directory):
        shapes.update(shard_shapes(path))
    return shapes


class ShardWriter:
    """Writes ``model-0000i-of-0000n.safetensors`` + ``model.safetensors.index.json``.

    Each ``write`` call becomes one shard (so memory stays at one input shard); the final
    names are assigned in ``close`` once the shard count is known."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self._written: list[tuple[Path, list[str]]] = []
        self._total_bytes = 0

    def write(self, tensors: dict[str, torch.Tensor]) -> None:
        if not tensors:
            return
        path = self.directory / f"model-part{len(self._written):05d}.tmp"
        write_safetensors({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata={"format": "pt"})
        self._total_bytes += sum(t.numel() * t.element_size() for t in tensors.values())
        self._written.append((path, sorted(tensors)))

    def close(self) -> dict[str, str]:
        """Rename the parts to their final names, write the index; returns the weight map."""
        count = len(self._written)
        weight_map: dict[str, str] = {}
        for number, (path, names) in enumerate(self._written, start=1):
            final = f"model-{number:05d}-of-{count:05d}.safetensors"
            path.rename(self.directory / final)
            weight_map.update({name: final for name in names})
        index = {"metadata": {"total_size": self._total_bytes}, "weight_map": dict(sorted(weight_map.items()))}
        (self.directory / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
        return weight_map
