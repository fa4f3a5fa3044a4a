"""Weights on disk: safetensors only, strict key matching, aliased (tied) tensors saved once."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from lisa.errors import LisaError

WEIGHTS_NAME = "model.safetensors"


def save_weights(model: nn.Module, directory: Path) -> None:
    tied = tied_names(model)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if k not in tied}
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt"})


def load_weights(model: nn.Module, directory: Path, device: str | torch.device = "cpu") -> None:
    path = directory / WEIGHTS_NAME
    if not path.is_file():
        raise LisaError(f"{directory}: {WEIGHTS_NAME} is missing")
    load_state_strict(model, load_file(str(path), device=str(device)))


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load every key; a missing or unexpected key is an error that lists them."""
    expected = set(model.state_dict())
    missing = sorted(expected - set(state) - tied_names(model))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise LisaError(
            f"checkpoint does not match the model: missing {len(missing)} keys {missing[:10]}, "
            f"unexpected {len(unexpected)} keys {unexpected[:10]}"
        )
    model.load_state_dict(state, strict=False)


def tied_names(model: nn.Module) -> set[str]:
    """State-dict names that alias an earlier parameter (e.g. lm_head tied to the embeddings)."""
    seen: set[int] = set()
    tied = set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            tied.add(name)
        seen.add(id(tensor))
    return tied
