"""Turn user-facing names ("auto", "bf16", "lisa-tiny") into devices, dtypes and folders."""

from __future__ import annotations

import os
import re
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
    """Where shipped checkpoints live: $LISA_MODELS_DIR, else the package's own checkpoints/
    (package data: the same folder in a source checkout and in an installed wheel)."""
    override = os.environ.get("LISA_MODELS_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[1] / "checkpoints"


# "org/name" or "org/name@revision", as on the Hugging Face hub
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?$")


def resolve_model_dir(model: str | Path) -> Path:
    """A folder, a shipped name ("lisa-tiny") or a hub id ("xinlai/LISA-7B-v1[@rev]")."""
    path = Path(model)
    if path.is_dir():
        return path
    shipped = shipped_models_dir() / str(model)
    if shipped.is_dir():
        return shipped
    if isinstance(model, str) and _HUB_ID.match(model) and not path.exists():
        return hub_snapshot(model)
    raise LisaError(
        f"model {model!r} not found: give a lisa-seg model folder, a shipped name "
        f"(looked in {shipped_models_dir()}) or a Hugging Face hub id (org/name). A tiny random model "
        "for trying the pipeline: `lisa tiny-model --out DIR`."
    )


def hub_snapshot(hub_id: str) -> Path:
    """The local folder of a hub repository: from the cache (HF_HOME / HF_HUB_CACHE) if it is
    there, else downloaded into it; with HF_HUB_OFFLINE=1 only the cache is used."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, HfHubHTTPError, LocalEntryNotFoundError

    repo_id, _, revision = hub_id.partition("@")
    try:
        return Path(snapshot_download(repo_id, revision=revision or None))
    except LocalEntryNotFoundError as error:
        raise LisaError(
            f"{hub_id} is not in the Hugging Face cache and cannot be downloaded now ({error.__class__.__name__}); "
            "go online once (unset HF_HUB_OFFLINE) or give a local folder"
        ) from None
    except (HfHubHTTPError, HFValidationError, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
        raise LisaError(f"cannot get {hub_id} from the Hugging Face hub: {first_line}") from None
