"""lisa-seg: reasoning segmentation with a multimodal LLM whose [SEG] token prompts SAM."""

__version__ = "0.1.0"
