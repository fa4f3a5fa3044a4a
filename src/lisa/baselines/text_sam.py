"""TextPromptSegmenter: a text encoder prompting SAM's mask decoder with one sparse token.

The prompt enters ``decode_masks`` exactly where LISA's projected ``[SEG]`` state does; the
image encoder is the same frozen stage-1 SAM. There is no "no target" output: every query gets
a mask (thresholded logits, which may happen to be empty).

A model folder holds ``baseline.json``, ``text_encoder.safetensors``, ``tokenizer/`` and ``sam/``
(an HF ``SamModel`` folder with the fine-tuned mask decoder).
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_model, save_model
from torch import nn
from transformers import PreTrainedTokenizerFast, SamModel

from lisa.baselines.text_encoder import TextEncoder, TextEncoderSize
from lisa.data.image_io import load_image
from lisa.data.sample import EvalItem
from lisa.data.transforms import sam_view
from lisa.errors import LisaError
from lisa.model.sam import decode_masks, encode_images, upscale_masks

CONFIG_NAME = "baseline.json"
WEIGHTS_NAME = "text_encoder.safetensors"
QUERY_TEXTS = ("template", "phrase")  # the templated question (as LISA sees it) or the bare phrase


class TextPromptSegmenter(nn.Module):
    """Text -> [B, prompt_dim] prompt -> SAM mask decoder -> low-resolution mask logits."""

    def __init__(self, text_encoder: TextEncoder, sam: SamModel, tokenizer: PreTrainedTokenizerFast,
                 query_text: str = "template") -> None:
        super().__init__()
        if query_text not in QUERY_TEXTS:
            raise LisaError(f"query_text must be one of {', '.join(QUERY_TEXTS)}, got {query_text!r}")
        self.text_encoder, self.sam, self.tokenizer, self.query_text = text_encoder, sam, tokenizer, query_text

    @property
    def image_size(self) -> int:
        return int(self.sam.config.vision_config.image_size)

    def prompts(self, texts: list[str]) -> torch.Tensor:
        """texts -> [N, prompt_dim] sparse prompt embeddings."""
        device = self.text_encoder.cls.device
        encoded = self.tokenizer(texts, padding=True, truncation=True, max_length=self.text_encoder.size.max_length,
                                 return_tensors="pt")
        return self.text_encoder(encoded["input_ids"].to(device), encoded["attention_mask"].to(device))

    def forward(self, image_embeddings: torch.Tensor, texts: list[str], image_index: torch.Tensor) -> torch.Tensor:
        """image_embeddings [B, C, h, w], N texts, image_index [N] -> mask logits [N, 4h, 4w]."""
        low_res, _ = decode_masks(self.sam, image_embeddings, self.prompts(texts), image_index)
        return low_res

    @torch.no_grad()
    def segment(self, images: list[np.ndarray], texts: list[str], image_index: list[int]) -> list[np.ndarray]:
        """RGB uint8 images [H, W, 3], N texts and the image of each -> N bool masks [H, W]."""
        views = [sam_view(image, self.image_size) for image in images]
        pixels = torch.stack([view.pixels for view in views]).to(self.text_encoder.cls.device)
        low_res = self(encode_images(self.sam, pixels), texts, torch.tensor(image_index))
        masks = []
        for logits, index in zip(low_res, image_index):
            view = views[index]
            full = upscale_masks(logits[None], self.image_size, view.resized_size, view.original_size)[0]
            masks.append((full > 0).cpu().numpy())
        return masks

    def save_pretrained(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {"kind": "text_sam", "text": asdict(self.text_encoder.size), "query_text": self.query_text}
        (folder / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
        save_model(self.text_encoder, str(folder / WEIGHTS_NAME))
        self.tokenizer.save_pretrained(folder / "tokenizer")
        self.sam.save_pretrained(folder / "sam")
        return folder

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str = "cpu") -> "TextPromptSegmenter":
        folder = Path(folder)
        if not (folder / CONFIG_NAME).is_file():
            raise LisaError(f"{folder} is not a text-prompt baseline folder (no {CONFIG_NAME}); "
                            "train one with `lisa baseline train` and pass its run_dir/model")
        config = json.loads((folder / CONFIG_NAME).read_text())
        sam = SamModel.from_pretrained(folder / "sam")
        encoder = TextEncoder(TextEncoderSize(**config["text"]), sam.config.mask_decoder_config.hidden_size)
        load_model(encoder, str(folder / WEIGHTS_NAME), strict=True)
        tokenizer = PreTrainedTokenizerFast.from_pretrained(folder / "tokenizer")
        return cls(encoder, sam, tokenizer, config["query_text"]).to(device).eval()


def item_text(item: EvalItem, query_text: str) -> str:
    """The text given to the baseline: the evaluation prompt or the bare phrase / sentence."""
    return item.query if query_text == "template" else str(item.meta.get("text", item.query))


def baseline_predictor(model_dir: str | Path, device: str = "cpu"):
    """An evaluator ``Predictor``: one mask per item (never "no target"), answer text None.
    Each distinct image of a batch is encoded once."""
    model = TextPromptSegmenter.from_pretrained(model_dir, device)

    def predict(items: list[EvalItem]) -> list[tuple[np.ndarray, None]]:
        paths = list(dict.fromkeys(str(item.image) for item in items))
        images = [load_image(path) for path in paths]
        index = [paths.index(str(item.image)) for item in items]
        masks = model.segment(images, [item_text(item, model.query_text) for item in items], index)
        return [(mask, None) for mask in masks]

    return predict
