"""``lisa export``: merge a run's LoRA into the base weights and write a standalone model folder
(weights, config, tokenizer, image processor) that ``LisaPipeline.from_pretrained`` loads."""

from __future__ import annotations

import json
from pathlib import Path

from lisa.errors import LisaError
from lisa.train import checkpoint as ckpt
from lisa.train.config import TrainConfig, config_from_dict
from lisa.train.lora import merge_lora
from lisa.train.model_setup import base_dir, prepare_model


def run_config(run_dir: Path) -> TrainConfig:
    path = run_dir / "config.json"
    if not path.is_file():
        raise LisaError(f"{run_dir} is not a training run folder ({path.name} is missing)")
    return config_from_dict(json.loads(path.read_text()))


def pick_checkpoint(run_dir: Path, which: str) -> Path:
    """``last``, ``best`` or a checkpoint folder path."""
    if which == "best":
        path = run_dir / "best"
        if not (path / ckpt.WEIGHTS_NAME).is_file():
            raise LisaError(f"{run_dir} has no best checkpoint (no validation set configured?); use --checkpoint last")
        return path
    if which == "last":
        latest = ckpt.latest_checkpoint(run_dir / "checkpoints")
        if latest is None:
            raise LisaError(f"{run_dir} holds no checkpoint yet")
        return _intact(latest)
    path = Path(which)
    if not (path / ckpt.WEIGHTS_NAME).is_file():
        raise LisaError(f"{path} is not a checkpoint folder ({ckpt.WEIGHTS_NAME} missing)")
    return _intact(path)


def _intact(checkpoint: Path) -> Path:
    """A checkpoint with a manifest is exported only if every file still matches it."""
    problem = None if not (checkpoint / ckpt.MANIFEST_NAME).is_file() else ckpt.verify_checkpoint(checkpoint)
    if problem is not None:
        raise LisaError(f"checkpoint {checkpoint} is damaged ({problem}); export an intact one with "
                        "--checkpoint PATH, or resume the run (--resume falls back to the newest intact one)")
    return checkpoint


def merged_model(run_dir: Path, which: str = "last"):
    """(model with LoRA merged, tokenizer, processor) of a run's checkpoint."""
    config = run_config(run_dir)
    config.model.gradient_checkpointing = False
    model, tokenizer, processor = prepare_model(config, base_dir(config))
    ckpt.load_trainable(model, pick_checkpoint(run_dir, which))
    merge_lora(model)
    for param in model.parameters():
        param.requires_grad_(False)
    return model.eval(), tokenizer, processor


def export(run_dir: str | Path, out: str | Path, which: str = "last") -> Path:
    from lisa.model.build import save_bundle

    run_dir, out = Path(run_dir), Path(out)
    model, tokenizer, processor = merged_model(run_dir, which)
    model.config.extra = {**model.config.extra, "trained_run": str(run_dir), "checkpoint": which}
    save_bundle(out, model, tokenizer, processor)
    return out
