"""One config object that records every choice a LISA checkpoint depends on.

Saved as ``lisa_config.json`` beside the weights; the VLM and SAM configs are stored whole
so that any VLM with an adapter (``lisa.model.vlms``) and any SAM checkpoint in Hugging Face
format can be rebuilt. Loading
validates every field's type and range (pydantic) and the ids and sizes against the VLM and SAM
configs, so a damaged or hand-edited file is one error naming the key, never a model that
answers while ignoring the image.
"""

from __future__ import annotations

import json
from dataclasses import asdict, field
from pathlib import Path
from typing import Any, Literal

from pydantic.dataclasses import dataclass
from transformers import PretrainedConfig

from lisa.errors import LisaError
from lisa.model.mask_backbones import BACKBONES, backbone_of_config
from lisa.schema import STRICT_KEYS, Bool, Integer, NonNegativeInt, NonNegativeNumber, PositiveInt, Text, parse

CONFIG_NAME = "lisa_config.json"
FORMAT_VERSION = 1


# Keys added after models were shipped, written only when they differ from their default, so that
# a folder saved again reads back byte-identical (``load`` fills the default in).
OMITTED_AT_DEFAULT: dict[str, Any] = {"seg_head_image_attention": False, "seg_head_dense_prompt": False,
                                      "seg_head_read": "image_tokens", "seg_head_read_grid": None,
                                      "seg_head_embedding_read": False, "presence_head_width": None}


@dataclass(config=STRICT_KEYS)
class LisaConfig:
    vlm: dict[str, Any]  # the VLM's HF config .to_dict(); its model_type picks the adapter
    sam: dict[str, Any]  # SamConfig.to_dict()
    seg_token_id: NonNegativeInt
    # Placeholder id repeated num_image_tokens times in input_ids (LLaVA's own is -200, outside the vocabulary).
    image_token_id: Integer
    # Embeddings one image expands to (256 for CLIP-L/14 @ 224); 1 (unused) for a VLM whose
    # count varies per image (Qwen2.5-VL: it follows each image's patch grid).
    num_image_tokens: PositiveInt
    chat_template: Text = "llava_v1"
    projector: Literal["mlp", "linear"] = "mlp"  # "mlp": HF Llava's 2-layer projector; "linear": LLaVA-v1 / LISA
    # Token ids wrapped around the image span (LISA's <im_start>/<im_end>); None for plain Llava.
    image_start_id: NonNegativeInt | None = None
    image_end_id: NonNegativeInt | None = None
    # 4.31 slow-tokenizer behaviour: text touching an added token is whitespace-stripped.
    strip_text_around_tokens: Bool = False
    # Which hidden state feeds the seg head: the position that *predicts* [SEG] (official).
    seg_hidden_rule: Literal["predecessor"] = "predecessor"
    out_dim: PositiveInt = 256  # the mask backbone's prompt embedding size
    # "none": the official seg head; "batch": standardise the [SEG] state first (SegHead).
    seg_head_norm: Literal["none", "batch"] = "none"
    # True: the seg head also reads the [SEG]'s image tokens (SegHead's ImageAttention; not in the paper).
    seg_head_image_attention: Bool = False
    # True: that read's attention is also the mask decoder's dense prompt (SegHead; not in the paper).
    seg_head_dense_prompt: Bool = False
    # What that read attends over: the VLM's image tokens, or the mask backbone's image embedding (SegHead).
    seg_head_read: Literal["image_tokens", "mask_embedding"] = "image_tokens"
    # A read over the mask embedding sees it average-pooled to this many cells a side (None: as it is).
    seg_head_read_grid: PositiveInt | None = None
    # True: beside a read of the image tokens, a second read over the mask embedding, its map a
    # second dense prompt (SegHead; not in the paper).
    seg_head_embedding_read: Bool = False
    # The presence head's hidden width (lisa.model.presence; not in the paper): it declines the
    # masks of objects it finds absent. None: no presence head, every [SEG] gets its mask.
    presence_head_width: PositiveInt | None = None
    ce_weight: NonNegativeNumber = 1.0
    bce_weight: NonNegativeNumber = 2.0
    dice_weight: NonNegativeNumber = 0.5
    format_version: PositiveInt = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # provenance: converted from, trained by

    def vlm_config(self) -> PretrainedConfig:
        from lisa.model.vlms import adapter_for

        return adapter_for(self.vlm).config_from_dict(self.vlm)

    def sam_config(self) -> PretrainedConfig:
        """The mask backbone's config (SamConfig, Sam2Config, ...): ``sam``'s model_type picks the adapter."""
        return backbone_of_config(self.sam).config_class.from_dict(self.sam)

    @property
    def hidden_size(self) -> int:
        return int(self.vlm["text_config"]["hidden_size"])

    @property
    def sam_image_size(self) -> int:
        return backbone_of_config(self.sam).input_size(self.sam)

    def save(self, directory: str | Path) -> None:
        path = Path(directory) / CONFIG_NAME
        data = {k: v for k, v in asdict(self).items() if OMITTED_AT_DEFAULT.get(k, ...) != v}
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> "LisaConfig":
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise LisaError(not_a_model_folder(Path(directory)))
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            where = f" (line {error.lineno}, column {error.colno}: {error.msg})" if isinstance(error, json.JSONDecodeError) else ""
            raise LisaError(f"{path} is not valid JSON{where}: the file is damaged; copy or download the "
                            "model folder again") from None
        config = parse(cls, data, path)
        config.check(path)
        return config

    def check(self, source: str | Path) -> None:
        """The ids and sizes must fit the VLM and SAM configs they index into."""
        if self.format_version > FORMAT_VERSION:
            raise LisaError(f"{source}: format_version {self.format_version} was written by a newer lisa-seg "
                            f"(this one reads up to {FORMAT_VERSION}); upgrade lisa-seg")
        try:
            vlm, _ = self.vlm_config(), self.sam_config()
            vocab = int(vlm.text_config.vocab_size)
            prompt_dim = backbone_of_config(self.sam).prompt_dim(self.sam)
            image_tokens = count_image_tokens(vlm)
            _ = self.hidden_size, self.sam_image_size  # the model reads these two keys as written
        except LisaError as error:  # a VLM model_type without an adapter
            raise LisaError(f"{source}: {error}") from None
        except (AttributeError, KeyError, TypeError, ValueError, ZeroDivisionError) as error:
            raise LisaError(f"{source}: the 'vlm' or 'sam' section is not a complete Hugging Face config "
                            f"({type(error).__name__}: {error}); re-export or re-convert the model") from None
        ids = {"seg_token_id": self.seg_token_id, "image_token_id": self.image_token_id,
               "image_start_id": self.image_start_id, "image_end_id": self.image_end_id}
        for key, value in ids.items():
            if value is not None and value >= vocab:  # a negative image_token_id is a placeholder
                raise LisaError(f"{source}: {key} must be an integer in [0, {vocab}) (the vocabulary of "
                                f"vlm.text_config), got {value}")
        if image_tokens is not None and self.num_image_tokens != image_tokens:
            raise LisaError(f"{source}: num_image_tokens must be {image_tokens} (what vlm.vision_config gives "
                            f"one image), got {self.num_image_tokens}")
        if self.presence_head_width is not None and not (self.seg_head_image_attention and
                                                        self.seg_head_read == "image_tokens"):
            raise LisaError(f"{source}: presence_head_width needs a seg head that reads the image tokens "
                            "(seg_head_image_attention true, seg_head_read 'image_tokens')")
        if self.out_dim != prompt_dim:
            raise LisaError(f"{source}: out_dim must be {prompt_dim} (SAM's prompt size), got {self.out_dim}")


def not_a_model_folder(directory: Path) -> str:
    """Why ``directory`` (without lisa_config.json) is not a lisa-seg model folder, and what to do."""
    hf_config = directory / "config.json"
    kind = None
    if hf_config.is_file():
        try:
            kind = json.loads(hf_config.read_text(encoding="utf-8")).get("model_type")
        except (UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            kind = None
    if not directory.is_dir():
        return f"model folder {directory} does not exist"
    if kind in BACKBONES:
        return (f"{directory} is a SAM model folder (config.json says model_type '{kind}'), not a lisa-seg "
                f"model: give a folder with {CONFIG_NAME} (a SAM folder goes in a training config's model.sam)")
    if kind is not None:
        return (f"{directory} is a Hugging Face '{kind}' model folder, not a lisa-seg model ({CONFIG_NAME} "
                "is missing). For a released LISA checkpoint use `lisa convert official` (or "
                "LisaPipeline.from_pretrained(dir, vision_tower=CLIP_DIR)).")
    return (f"{directory} is not a lisa-seg model folder: {CONFIG_NAME} is missing. "
            "For a released LISA checkpoint use `lisa convert official` (or "
            "LisaPipeline.from_pretrained(dir, vision_tower=CLIP_DIR)).")


def stored_image_tokens(vlm_config: PretrainedConfig) -> int:
    """``num_image_tokens`` to record: the fixed count, or 1 (unused) when it varies per image."""
    fixed = count_image_tokens(vlm_config)
    return 1 if fixed is None else fixed


def count_image_tokens(vlm_config: PretrainedConfig) -> int | None:
    """Embeddings one image expands to, from the vision config (no hidden 256); None when the
    count varies per image."""
    from lisa.model.vlms import adapter_for

    return adapter_for(str(vlm_config.model_type)).fixed_image_tokens(vlm_config)
