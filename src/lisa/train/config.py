"""The training config: one dataclass tree, read from YAML and validated (pydantic) before any
model is built. Every number of a run lives here.

Each field states its type and range; a wrong one is one error line naming the file, the key,
what is expected and what was given. An unknown key anywhere is an error that names it
(``optim.lrr``), so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

import annotated_types
from pydantic.dataclasses import dataclass

from lisa.data.names import EVAL_DATASETS
from lisa.errors import LisaError
from lisa.schema import (
    STRICT_KEYS, Bool, Fraction, NonNegativeInt, NonNegativeNumber, Number, PositiveInt,
    PositiveNumber, Text, parse,
)

DataType = Literal["jsonl", "reason_seg", "refer_seg", "sem_seg", "vqa", "synthetic"]
ValDataset = Literal[EVAL_DATASETS]  # what val.dataset accepts: the evaluation registry
DATA_TYPES = typing.get_args(DataType)
VAL_DATASETS = EVAL_DATASETS
Unit = Annotated[Number, annotated_types.Ge(0), annotated_types.Le(1)]  # [0, 1]


@dataclass(config=STRICT_KEYS)
class ModelSection:
    """Where the weights come from: ``base`` (a lisa-seg model folder) or ``build`` (a fresh
    random model; keys are ``lisa.model.build.ModelSize`` fields: ``vlm`` picks llava, qwen2_5_vl
    or qwen3_vl, ``sam2`` / ``sam3_tracker`` a mask backbone other than SAM)."""

    base: Text | None = None  # a folder, or a shipped name (lisa-tiny)
    build: dict[str, Any] | None = None
    tokenizer_corpus_samples: PositiveInt = 64  # build only: draws of the mixture whose text trains the tokenizer
    precision: Literal["auto", "bf16", "fp16", "no"] = "auto"  # auto (bf16 on GPU, fp32 on CPU) | bf16 | fp16 | no
    gradient_checkpointing: Bool = False
    # Run the prompt prefix every conversation shares (BOS + system prompt) once per batch, not
    # once per row: the same loss and gradients, less LM work. False: the plain per-row forward.
    share_prefix: Bool = True
    full_embeddings: Bool = False  # True: whole embed_tokens / lm_head trainable (official); False: [SEG] rows
    sam: Text | None = None  # a trained SAM folder (stage 1) instead of the model's own SAM
    # Rebuild the seg head with this input norm ("none" | "batch", see SegHead); None: keep the base's.
    seg_head_norm: Literal["none", "batch"] | None = None
    # Rebuild the seg head with (True) or without (False) its read of the image tokens; None: keep the base's.
    seg_head_image_attention: bool | None = None
    # Add (True) a dense prompt from that read to the base's seg head, keeping its weights (the new
    # vector starts at zero: the same masks until it trains); None: keep the base's.
    seg_head_dense_prompt: bool | None = None
    # Point the base's image read at the VLM's image tokens or the mask backbone's image embedding
    # (SegHead): a fresh read, the rest of the head kept; None: keep the base's.
    seg_head_read: Literal["image_tokens", "mask_embedding"] | None = None
    # With seg_head_read: mask_embedding or seg_head_embedding_read, pool the embedding to this many
    # cells a side for that read (a coarser, blurrier map; None: the embedding's own grid).
    seg_head_read_grid: PositiveInt | None = None
    # Add (True) a second read over the mask embedding beside the base's dense-prompting read of the
    # image tokens (SegHead.enable_embedding_read: it starts silent, the same masks until it trains);
    # None: keep the base's.
    seg_head_embedding_read: bool | None = None
    tokenizer_corpus: list[Text] = field(default_factory=list)  # build only: folders whose texts train the tokenizer


@dataclass(config=STRICT_KEYS)
class LoraSection:
    r: PositiveInt = 8
    alpha: PositiveInt = 16
    dropout: Fraction = 0.05
    targets: Annotated[list[Text], annotated_types.MinLen(1)] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass(config=STRICT_KEYS)
class DataSource:
    """One group of the mixture, drawn with probability ``rate / sum(rates)``."""

    type: DataType
    dir: Text
    rate: PositiveNumber = 1.0
    split: Text = "train"
    names: list[Text] = field(default_factory=list)  # refer_seg / sem_seg: datasets; jsonl: file stems
    explanatory: Unit = 0.1  # reason_seg
    explain_first: Bool = False  # reason_seg: mask answers state the explanation before [SEG]
    explanatory_path: Text | None = None  # reason_seg: default DIR/explanatory/train.json
    # jsonl: a no-target record is answered with [SEG] and an empty mask instead of the decline
    # text, so that the mask path, which sees the image at full size, learns to find nothing.
    no_target_as_empty_mask: Bool = False
    images: PositiveInt = 16  # synthetic: images written to ``dir``
    image_size: PositiveInt = 64  # synthetic


@dataclass(config=STRICT_KEYS)
class ValSection:
    dataset: ValDataset
    dir: Text
    split: Text = "val"
    limit: PositiveInt | None = None  # score only the first N items
    teacher_forced: Bool = True  # official validation: the answer "[SEG]." is given
    batch_size: PositiveInt = 8
    names: list[Text] = field(default_factory=list)  # jsonl: which file stems (empty: all)


@dataclass(config=STRICT_KEYS)
class OptimSection:
    lr: PositiveNumber = 3e-4
    betas: Annotated[list[Fraction], annotated_types.Len(2, 2)] = field(default_factory=lambda: [0.9, 0.95])
    weight_decay: NonNegativeNumber = 0.0
    warmup_steps: NonNegativeInt = 100
    max_steps: PositiveInt = 5000  # optimizer steps; the lr decays linearly to 0 here
    batch_size: PositiveInt = 2  # images per micro-batch per process
    grad_accum: PositiveInt = 10
    clip: NonNegativeNumber = 1.0  # 0: no clipping


@dataclass(config=STRICT_KEYS)
class SegWarmupSection:
    """The first ``steps`` optimizer steps regress each projected [SEG] state onto SAM's one-token
    embedding of its target's box instead of the mask loss (lisa.train.seg_warmup)."""

    steps: PositiveInt
    weight: PositiveNumber = 1.0
    # A seg head that reads the image tokens: cross-entropy of its attention against the target's cells.
    attention_weight: NonNegativeNumber = 0.0


@dataclass(config=STRICT_KEYS)
class TrainConfig:
    run_dir: Text
    model: ModelSection
    data: Annotated[list[DataSource], annotated_types.MinLen(1)]
    seed: NonNegativeInt = 0
    max_queries: PositiveInt = 3  # conversations per image
    recipe: Text = "lisa"  # which parameters train: see lisa.train.trainable.RECIPES
    lora: LoraSection | None = field(default_factory=LoraSection)  # null: no adapters
    optim: OptimSection = field(default_factory=OptimSection)
    val: ValSection | None = None
    precompute_sam_embeddings: Bool = True  # the SAM encoder is frozen: encode each image once
    sam_cache_images: PositiveInt = 2048  # embeddings kept in memory (least recently used dropped)
    save_every: PositiveInt = 500
    keep_last: PositiveInt = 2
    val_every: PositiveInt = 500
    log_every: PositiveInt = 10
    threads: PositiveInt | None = None  # torch CPU threads (fixed for bit-exact CPU resume)
    seg_warmup: SegWarmupSection | None = None  # null: BCE + DICE from the first step (the paper)
    # A seg head that reads the image tokens: after any warm-up, the mask loss also counts this weight x
    # the cross-entropy of its attention against the target's image-token cells (LisaModel.forward).
    seg_attention_weight: NonNegativeNumber = 0.0
    # A model with a presence head (lisa.model.presence): this weight x its BCE on every [SEG] (label:
    # the target mask is not empty; absent objects come from jsonl sources with no_target_as_empty_mask),
    # trained with the LM and the read (LisaModel.forward). 0: the head, if any, is left as it is.
    presence_weight: NonNegativeNumber = 0.0

    def check(self, source: str) -> None:
        """What one field's type cannot say: choices that depend on each other."""
        def fail(message: str) -> None:
            raise LisaError(f"{source}: {message}")

        if (self.model.base is None) == (self.model.build is None):
            fail("model: give exactly one of 'base' (a lisa-seg model folder) or 'build' (model size)")
        if self.model.build is not None:
            from lisa.model.build import ModelSize

            size = parse(ModelSize, self.model.build, source, prefix="model.build")
            if size.sam2 is not None and size.sam3_tracker is not None:
                fail("model.build: give at most one of sam2 and sam3_tracker (neither: SAM)")
        if self.val is not None and self.val.names and self.val.dataset != "jsonl":
            fail("val.names selects JSONL files; use it with val.dataset: jsonl")
        from lisa.train.trainable import RECIPES

        if self.recipe not in RECIPES:
            fail(f"recipe {self.recipe!r} is unknown: must be one of {', '.join(map(repr, RECIPES))}")
        if self.recipe == "lisa_sam_encoder" and self.precompute_sam_embeddings:
            fail("recipe lisa_sam_encoder trains SAM's image encoder: set precompute_sam_embeddings: false")
        if self.recipe == "lisa_vlm" and self.lora is not None:
            fail("recipe lisa_vlm trains the whole VLM: set lora: null (LoRA on weights that train anyway adds nothing)")
        if self.recipe == "mask_path" and (self.lora is not None or self.model.full_embeddings):
            fail("recipe mask_path trains no part of the VLM: set lora: null and leave model.full_embeddings false")


def config_from_dict(data: Any, source: str | Path = "config") -> TrainConfig:
    """A validated config; ``source`` (the file) is named in every error."""
    config = parse(TrainConfig, data, source)
    config.check(str(source))
    # Data paths may live in the run folder: "{run_dir}/data".
    for data_source in config.data:
        data_source.dir = data_source.dir.replace("{run_dir}", config.run_dir)
    if config.val is not None:
        config.val.dir = config.val.dir.replace("{run_dir}", config.run_dir)
    return config


def read_yaml(path: str | Path) -> Any:
    """A YAML file's content; a missing file or a YAML syntax error is one line naming the file."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise LisaError(f"config {path} not found")
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise LisaError(f"{path} is not a text (UTF-8) file; give a YAML config") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise LisaError(f"{path}: not valid YAML{where}: {problem}") from None


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read and validate a YAML config. ``overrides`` replace keys before validation, dotted for
    nested ones: ``{"run_dir": ..., "optim.max_steps": ...}`` (None: keep the file's value)."""
    data = read_yaml(path)
    data = {} if data is None else data
    for key, value in (overrides or {}).items():
        if value is None or not isinstance(data, dict):
            continue
        *parents, last = key.split(".")
        target = data
        for parent in parents:
            target = target.setdefault(parent, {})
            if not isinstance(target, dict):
                break
        else:
            target[last] = value
    return config_from_dict(data, path)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)
