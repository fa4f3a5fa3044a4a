"""8-bit / 4-bit loading through bitsandbytes: the guard and the settings.

Only the LLaMA decoder layers are quantised. ``lm_head``, the seg head, SAM, CLIP and the
projector stay in the run precision: the official code quantises lm_head and
``text_hidden_fcs`` too, and its bf16 + 4-bit path crashes there. bitsandbytes needs a CUDA
GPU; on CPU, or without the package, this raises a LisaError that says so.
"""

from __future__ import annotations

import importlib.util

import torch

from lisa.errors import LisaError

SKIP_MODULES = ["lm_head", "seg_head", "sam", "vision_tower", "multi_modal_projector"]


def quantization_config(bits: int, device: torch.device, compute_dtype: torch.dtype = torch.bfloat16):
    """A transformers ``BitsAndBytesConfig`` for ``bits`` in (8, 4), or a LisaError explaining why not."""
    if bits not in (8, 4):
        raise LisaError(f"quantisation to {bits} bits is not supported; choose 8 or 4")
    if device.type != "cuda":
        raise LisaError(f"{bits}-bit loading needs a CUDA GPU (bitsandbytes); on {device.type} use fp32 or bf16")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise LisaError(f"{bits}-bit loading needs bitsandbytes: pip install bitsandbytes")
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_8bit=bits == 8,
        load_in_4bit=bits == 4,
        llm_int8_skip_modules=list(SKIP_MODULES),
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
    )
