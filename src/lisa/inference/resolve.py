"""Turn user-facing names ("auto", "bf16", "lisa-tiny") into devices, dtypes and folders."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from lisa.errors import LisaError

DEFAULT_MODEL = "lisa-tiny"
_DTYPES = {
    "float32": torch.float32, "fp32": torch.float32,
    "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
    "float16": torch.float16, "fp16": torch.float16,
}


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise LisaError("--device cuda was asked for but no CUDA GPU is available; use --device cpu")
    return resolved


def resolve_dtype(dtype: str | torch.dtype, device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    if dtype not in _DTYPES:
        raise LisaError(f"unknown dtype {dtype!r}; choose one of auto, {', '.join(_DTYPES)}")
    return _DTYPES[dtype]


def shipped_models_dir() -> Path:
    """Where shipped checkpoints live: $LISA_MODELS_DIR, else the repository's checkpoints/."""
    override = os.environ.get("LISA_MODELS_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / "checkpoints"


def resolve_model_dir(model: str | Path) -> Path:
    path = Path(model)
    if path.is_dir():
        return path
    shipped = shipped_models_dir() / str(model)
    if shipped.is_dir():
        return shipped
    raise LisaError(
        f"model {model!r} not found: give a lisa-seg model folder, or a shipped name "
        f"(looked in {shipped_models_dir()}). A tiny random model for trying the pipeline: "
        "`lisa tiny-model --out DIR`."
    )
