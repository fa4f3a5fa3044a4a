"""lisa-seg: reasoning segmentation with a multimodal LLM whose [SEG] token prompts SAM.

    from lisa import LisaPipeline
    pipe = LisaPipeline.from_pretrained("lisa-tiny")
    result = pipe("photo.jpg", "What in this picture would keep you dry in the rain?")
    result.text, result.masks  # str, bool [N, H, W]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["LisaPipeline", "SegmentResult", "LisaModel", "LisaConfig", "LisaError"]

if TYPE_CHECKING:
    from lisa.errors import LisaError
    from lisa.inference.pipeline import LisaPipeline, SegmentResult
    from lisa.model.config import LisaConfig
    from lisa.model.lisa import LisaModel

_LOCATIONS = {
    "LisaPipeline": "lisa.inference.pipeline",
    "SegmentResult": "lisa.inference.pipeline",
    "LisaModel": "lisa.model.lisa",
    "LisaConfig": "lisa.model.config",
    "LisaError": "lisa.errors",
}


def __getattr__(name: str) -> Any:
    """Import on first use, so that `import lisa` (and the CLI's help) stays fast."""
    if name in _LOCATIONS:
        import importlib

        return getattr(importlib.import_module(_LOCATIONS[name]), name)
    raise AttributeError(f"module 'lisa' has no attribute {name!r}")
