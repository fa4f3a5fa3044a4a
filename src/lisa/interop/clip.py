"""A CLIP folder (e.g. ``openai/clip-vit-large-patch14``) -> the Llava vision tower.

Released LISA checkpoints do not contain CLIP; it is read from the folder the user names.
A full ``CLIPModel`` checkpoint holds ``vision_model.*`` plus text-side keys, which are skipped.
"""

from __future__ import annotations

from pathlib import Path

from transformers import CLIPImageProcessorPil, CLIPVisionConfig

from lisa.errors import LisaError

TOWER_PREFIX = "vlm.model.vision_tower."
_SKIPPED_PREFIXES = ("text_model.", "text_projection.", "visual_projection.")
_SKIPPED_NAMES = {"logit_scale"}


def clip_key(name: str) -> str | None:
    """CLIP checkpoint name -> our state-dict name; None for text-side keys and buffers.

    Raises KeyError for a name that is not part of a CLIP checkpoint."""
    if name in _SKIPPED_NAMES or name.startswith(_SKIPPED_PREFIXES) or name.endswith("position_ids"):
        return None
    if name.startswith("vision_model."):
        return TOWER_PREFIX + name[len("vision_model."):]
    raise KeyError(name)


def require_clip_dir(directory: str | Path) -> Path:
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise LisaError(
            f"vision tower {directory} is not a CLIP folder (config.json missing); download "
            "openai/clip-vit-large-patch14 and pass its folder"
        )
    return directory


def clip_vision_config(directory: str | Path) -> CLIPVisionConfig:
    """The vision half of a CLIP (or CLIP-vision) config."""
    return CLIPVisionConfig.from_pretrained(str(require_clip_dir(directory)))


def clip_image_processor(directory: str | Path) -> CLIPImageProcessorPil:
    """The folder's own preprocessing (ViT-L/14: shortest side 224, centre crop 224)."""
    directory = require_clip_dir(directory)
    if not (directory / "preprocessor_config.json").is_file():
        raise LisaError(f"{directory}: preprocessor_config.json is missing")
    return CLIPImageProcessorPil.from_pretrained(str(directory))
