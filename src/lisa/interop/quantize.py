"""8-bit / 4-bit loading through bitsandbytes: the guard, the settings, and the conversion.

Only the LLaMA decoder layers are quantised. ``lm_head``, the seg head, SAM, CLIP and the
projector stay in the run precision: the official code quantises lm_head and
``text_hidden_fcs`` too, and its bf16 + 4-bit path crashes there. bitsandbytes needs a CUDA
GPU; on CPU, or without the package, this raises a LisaError that says so.
"""

from __future__ import annotations

import importlib.util

import torch

from lisa.errors import LisaError

# The vision side's names of every VLM adapter (Llava: vision_tower, multi_modal_projector; Qwen2.5-VL: visual).
SKIP_MODULES = ["lm_head", "seg_head", "sam", "vision_tower", "multi_modal_projector", "visual"]


def check_quantization(bits: int, device: torch.device) -> None:
    """Raise a LisaError that says why ``bits``-bit loading cannot run here (if it cannot)."""
    if bits not in (8, 4):
        raise LisaError(f"quantisation to {bits} bits is not supported; choose 8 or 4")
    if device.type != "cuda":
        raise LisaError(f"{bits}-bit loading needs a CUDA GPU (bitsandbytes); on {device.type} use fp32 or bf16")
    if importlib.util.find_spec("bitsandbytes") is None:
        raise LisaError(f"{bits}-bit loading needs bitsandbytes: pip install bitsandbytes")


def quantization_config(bits: int, device: torch.device, compute_dtype: torch.dtype = torch.bfloat16):
    """A transformers ``BitsAndBytesConfig`` for ``bits`` in (8, 4), or a LisaError explaining why not."""
    check_quantization(bits, device)
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(
        load_in_8bit=bits == 8,
        load_in_4bit=bits == 4,
        llm_int8_skip_modules=list(SKIP_MODULES),
        bnb_4bit_compute_dtype=compute_dtype,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
    )


def quantize_language_model(model, bits: int, device: torch.device, compute_dtype: torch.dtype = torch.float16):
    """Replace every Linear of the LLM's decoder layers by its bitsandbytes counterpart and move
    the model to ``device`` (the move quantises). lm_head, the seg head, SAM, the vision tower
    and the projector keep ``compute_dtype``. GPU only; not exercised by the CPU test suite."""
    check_quantization(bits, device)
    import bitsandbytes as bnb
    from torch import nn

    layers = model.adapter.language_model(model.vlm).layers
    targets = [(name, module) for name, module in layers.named_modules() if isinstance(module, nn.Linear)]
    for name, linear in targets:
        parent_name, _, child = name.rpartition(".")
        parent = layers.get_submodule(parent_name) if parent_name else layers
        setattr(parent, child, _bnb_linear(bnb, linear, bits, compute_dtype))
    return model.to(device=device)


def _bnb_linear(bnb, linear, bits: int, compute_dtype: torch.dtype):
    has_bias = linear.bias is not None
    weight = linear.weight.data.to(compute_dtype)
    if bits == 8:
        quantized = bnb.nn.Linear8bitLt(linear.in_features, linear.out_features, bias=has_bias,
                                        has_fp16_weights=False, threshold=6.0)
        quantized.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    else:
        quantized = bnb.nn.Linear4bit(linear.in_features, linear.out_features, bias=has_bias,
                                      compute_dtype=compute_dtype, quant_type="nf4")
        quantized.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4")
    if has_bias:
        quantized.bias = torch.nn.Parameter(linear.bias.data.to(compute_dtype), requires_grad=False)
    return quantized
