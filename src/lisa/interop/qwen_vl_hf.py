"""Training base for `lisa init` from a Hugging Face Qwen2.5-VL or Qwen3-VL folder
(``Qwen/Qwen2.5-VL-3B-Instruct``, ``Qwen/Qwen3-VL-4B-Instruct``, ...).

The folder's config, weights (transformers 4.x layout ``model.layers.*`` / ``visual.*``, or the
5.x one ``model.language_model.*`` / ``model.visual.*``), tokenizer with its chat template, and
Qwen2-VL image processor. ``[SEG]`` is added to the tokenizer; prompts use the tokenizer's chat
template (``chat_template="tokenizer"``), the image span is ``<|vision_start|>`` + one
``<|image_pad|>`` per image token + ``<|vision_end|>``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PretrainedConfig

from lisa.errors import LisaError
from lisa.model.vlms import adapter_for

_RULES = [  # first match wins: the 5.x names only gain "vlm.", the 4.x ones move under model.
    (re.compile(r"(model\.(language_model|visual)\..+|lm_head\..+)"), r"vlm.\1"),
    (re.compile(r"visual\.(.+)"), r"vlm.model.visual.\1"),
    (re.compile(r"model\.(.+)"), r"vlm.model.language_model.\1"),
]


def qwen_vl_key(name: str) -> str | None:
    """A Qwen2.5-VL checkpoint key -> its name in LisaModel (None: a buffer we rebuild)."""
    if name.endswith("rotary_emb.inv_freq"):
        return None
    for pattern, replacement in _RULES:
        if pattern.fullmatch(name):
            return pattern.sub(replacement, name)
    raise KeyError(name)


def model_type(directory: Path) -> str | None:
    return json.loads((directory / "config.json").read_text()).get("model_type")


def _chat_template(directory: Path, tokenizer) -> None:
    """Newer folders keep the template beside the tokenizer (chat_template.json / .jinja)."""
    if getattr(tokenizer, "chat_template", None):
        return
    jinja, as_json = directory / "chat_template.jinja", directory / "chat_template.json"
    if jinja.is_file():
        tokenizer.chat_template = jinja.read_text()
    elif as_json.is_file():
        tokenizer.chat_template = json.loads(as_json.read_text())["chat_template"]
    else:
        raise LisaError(f"{directory}: the tokenizer has no chat template (chat_template.jinja or .json)")


def read_qwen_vl(directory: Path, add_seg_token, read_state) -> tuple[PretrainedConfig, Any, int, dict, Any, dict]:
    """(config, tokenizer with [SEG], [SEG] id, state dict, image processor, LisaConfig fields)."""
    adapter = adapter_for(model_type(directory) or "")
    config = adapter.config_from_dict(json.loads((directory / "config.json").read_text()))
    tokenizer = AutoTokenizer.from_pretrained(str(directory))
    _chat_template(directory, tokenizer)
    seg_id = add_seg_token(tokenizer)
    config.text_config.vocab_size = max(config.text_config.vocab_size, len(tokenizer))
    state = read_state(directory, qwen_vl_key)
    processor = adapter.load_image_processor(directory)
    lisa = dict(projector="mlp", image_token_id=int(config.image_token_id), chat_template="tokenizer",
                strip_text_around_tokens=False)
    return config, tokenizer, seg_id, state, processor, lisa
