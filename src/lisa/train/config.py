"""The training config: one dataclass tree, read from YAML. Every number of a run lives here.

An unknown key anywhere is an error that names it (``optim.lrr``), so a typo never silently
falls back to a default.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lisa.data.names import EVAL_DATASETS
from lisa.errors import LisaError

DATA_TYPES = ("jsonl", "reason_seg", "refer_seg", "sem_seg", "vqa", "synthetic")
VAL_DATASETS = EVAL_DATASETS  # what val.dataset accepts: the evaluation registry


@dataclass
class ModelSection:
    """Where the weights come from: ``base`` (a lisa-seg model folder) or ``build`` (a fresh
    random model; keys are ``lisa.model.build.ModelSize`` fields)."""

    base: str | None = None
    build: dict[str, Any] | None = None
    tokenizer_corpus_samples: int = 64  # build only: draws of the mixture whose text trains the tokenizer
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | bf16 | fp16 | no
    gradient_checkpointing: bool = False
    # Run the prompt prefix every conversation shares (BOS + system prompt) once per batch, not
    # once per row: the same loss and gradients, less LM work. False: the plain per-row forward.
    share_prefix: bool = True
    full_embeddings: bool = False  # True: whole embed_tokens / lm_head trainable (official); False: [SEG] rows
    sam: str | None = None  # a trained SAM folder (stage 1) instead of the model's own SAM
    # Rebuild the seg head with this input norm ("none" | "batch", see SegHead); None: keep the base's.
    seg_head_norm: str | None = None
    tokenizer_corpus: list[str] = field(default_factory=list)  # build only: folders whose texts train the tokenizer


@dataclass
class LoraSection:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    targets: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass
class DataSource:
    """One group of the mixture, drawn with probability ``rate / sum(rates)``."""

    type: str  # one of DATA_TYPES
    dir: str
    rate: float = 1.0
    split: str = "train"
    names: list[str] = field(default_factory=list)  # refer_seg / sem_seg: datasets; jsonl: file stems
    explanatory: float = 0.1  # reason_seg
    images: int = 16  # synthetic: images written to ``dir``
    image_size: int = 64  # synthetic


@dataclass
class ValSection:
    dataset: str  # one of VAL_DATASETS
    dir: str
    split: str = "val"
    limit: int | None = None  # score only the first N items
    teacher_forced: bool = True  # official validation: the answer "[SEG]." is given
    batch_size: int = 8
    names: list[str] = field(default_factory=list)  # jsonl: which file stems (empty: all)


@dataclass
class OptimSection:
    lr: float = 3e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    weight_decay: float = 0.0
    warmup_steps: int = 100
    max_steps: int = 5000  # optimizer steps; the lr decays linearly to 0 here
    batch_size: int = 2  # images per micro-batch per process
    grad_accum: int = 10
    clip: float = 1.0


@dataclass
class TrainConfig:
    run_dir: str
    model: ModelSection
    data: list[DataSource]
    seed: int = 0
    max_queries: int = 3  # conversations per image
    recipe: str = "lisa"  # which parameters train: see lisa.train.trainable.RECIPES
    lora: LoraSection | None = field(default_factory=LoraSection)  # null: no adapters
    optim: OptimSection = field(default_factory=OptimSection)
    val: ValSection | None = None
    precompute_sam_embeddings: bool = True  # the SAM encoder is frozen: encode each image once
    sam_cache_images: int = 2048  # embeddings kept in memory (least recently used dropped)
    save_every: int = 500
    keep_last: int = 2
    val_every: int = 500
    log_every: int = 10
    threads: int | None = None  # torch CPU threads (fixed for bit-exact CPU resume)

    def check(self) -> None:
        if (self.model.base is None) == (self.model.build is None):
            raise LisaError("model: give exactly one of 'base' (a lisa-seg model folder) or 'build' (model size)")
        if not self.data:
            raise LisaError("data: list at least one dataset")
        for k, source in enumerate(self.data):
            if source.type not in DATA_TYPES:
                raise LisaError(f"data[{k}].type {source.type!r} is unknown; choose from {', '.join(DATA_TYPES)}")
        if self.val is not None and self.val.dataset not in VAL_DATASETS:
            raise LisaError(f"val.dataset {self.val.dataset!r} is unknown; choose from {', '.join(VAL_DATASETS)}")
        if self.val is not None and self.val.names and self.val.dataset != "jsonl":
            raise LisaError("val.names selects JSONL files; use it with val.dataset: jsonl")
        from lisa.train.trainable import RECIPES

        if self.recipe not in RECIPES:
            raise LisaError(f"recipe {self.recipe!r} is unknown; choose from {', '.join(RECIPES)}")
        if self.recipe == "lisa_sam_encoder" and self.precompute_sam_embeddings:
            raise LisaError("recipe lisa_sam_encoder trains SAM's image encoder: set precompute_sam_embeddings: false")
        if self.model.precision not in ("auto", "bf16", "fp16", "no"):
            raise LisaError(f"model.precision {self.model.precision!r}: use auto, bf16, fp16 or no")
        for name in ("save_every", "keep_last", "val_every", "log_every"):
            if getattr(self, name) < 1:
                raise LisaError(f"{name} must be at least 1")
        o = self.optim
        if o.batch_size < 1 or o.grad_accum < 1 or o.max_steps < 1:
            raise LisaError("optim.batch_size, optim.grad_accum and optim.max_steps must be at least 1")


def _build(cls: type, data: Any, path: str) -> Any:
    """A dataclass from a mapping, recursing into nested dataclasses; unknown keys are errors."""
    if not isinstance(data, dict):
        raise LisaError(f"{path or 'config'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"{path}." if path else ""
        raise LisaError(f"unknown config key {where}{unknown[0]} (known: {', '.join(sorted(names))})")
    values = {}
    for key, value in data.items():
        values[key] = _convert(hints[key], value, f"{path}.{key}" if path else key)
    try:
        return cls(**values)
    except TypeError as error:  # a required key is missing
        raise LisaError(f"{path or 'config'}: {error}") from None


def _convert(hint: Any, value: Any, path: str) -> Any:
    target = hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None -> X
        target = [a for a in typing.get_args(hint) if a is not type(None)][0]
    if value is None:
        return None
    if dataclasses.is_dataclass(target):
        return _build(target, value, path)
    if typing.get_origin(target) is list:
        inner = typing.get_args(target)[0]
        if not isinstance(value, list):
            raise LisaError(f"{path}: expected a list")
        return [_convert(inner, v, f"{path}[{i}]") for i, v in enumerate(value)]
    if target is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return value


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    config = _build(TrainConfig, data, "")
    config.check()
    # Data paths may live in the run folder: "{run_dir}/data".
    for source in config.data:
        source.dir = source.dir.replace("{run_dir}", config.run_dir)
    if config.val is not None:
        config.val.dir = config.val.dir.replace("{run_dir}", config.run_dir)
    return config


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML config; ``overrides`` replace top-level keys (e.g. run_dir from the CLI)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise LisaError(f"config {path} not found")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return config_from_dict(data)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)
