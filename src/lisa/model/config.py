"""One config object that records every choice a LISA checkpoint depends on.

Saved as ``lisa_config.json`` beside the weights; the VLM and SAM configs are stored whole
so that any Llava-family and any SAM checkpoint in Hugging Face format can be rebuilt.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from transformers import LlavaConfig, SamConfig

from lisa.errors import LisaError

CONFIG_NAME = "lisa_config.json"
FORMAT_VERSION = 1


@dataclass
class LisaConfig:
    vlm: dict[str, Any]  # LlavaConfig.to_dict()
    sam: dict[str, Any]  # SamConfig.to_dict()
    seg_token_id: int
    image_token_id: int  # placeholder id repeated num_image_tokens times in input_ids
    num_image_tokens: int  # embeddings one image expands to (256 for CLIP-L/14 @ 224)
    chat_template: str = "llava_v1"
    projector: str = "mlp"  # "mlp": HF Llava's 2-layer projector; "linear": LLaVA-v1 / LISA
    # Token ids wrapped around the image span (LISA's <im_start>/<im_end>); None for plain Llava.
    image_start_id: int | None = None
    image_end_id: int | None = None
    # 4.31 slow-tokenizer behaviour: text touching an added token is whitespace-stripped.
    strip_text_around_tokens: bool = False
    # Which hidden state feeds the seg head: the position that *predicts* [SEG] (official).
    seg_hidden_rule: str = "predecessor"
    out_dim: int = 256  # SAM prompt embedding size
    # "none": the official seg head; "batch": standardise the [SEG] state first (SegHead).
    seg_head_norm: str = "none"
    ce_weight: float = 1.0
    bce_weight: float = 2.0
    dice_weight: float = 0.5
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)  # provenance: converted from, trained by

    def vlm_config(self) -> LlavaConfig:
        return LlavaConfig.from_dict(self.vlm)

    def sam_config(self) -> SamConfig:
        return SamConfig.from_dict(self.sam)

    @property
    def hidden_size(self) -> int:
        return int(self.vlm["text_config"]["hidden_size"])

    @property
    def sam_image_size(self) -> int:
        return int(self.sam["vision_config"]["image_size"])

    def save(self, directory: str | Path) -> None:
        path = Path(directory) / CONFIG_NAME
        path.write_text(json.dumps(asdict(self), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> "LisaConfig":
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            raise LisaError(
                f"{directory} is not a lisa-seg model folder: {CONFIG_NAME} is missing. "
                "For a released LISA checkpoint use `lisa convert official` (or "
                "LisaPipeline.from_pretrained(dir, vision_tower=CLIP_DIR))."
            )
        data = json.loads(path.read_text())
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise LisaError(f"{path}: unknown config keys {unknown}; written by a newer lisa-seg?")
        return cls(**data)


def count_image_tokens(vlm_config: LlavaConfig) -> int:
    """Embeddings one image expands to, from the vision config (no hidden 256)."""
    vision = vlm_config.vision_config
    patches = (vision.image_size // vision.patch_size) ** 2
    keeps_cls = vlm_config.vision_feature_select_strategy == "full"
    return patches + (1 if keeps_cls else 0)
