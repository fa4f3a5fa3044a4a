"""The fixed inputs of the golden-output tests and the function that runs them.

``run_cases`` is what both the test (tests/test_golden.py) and the regeneration script
(tests/golden/regenerate.py) call, so the stored files hold exactly what the test recomputes.

Models: the shipped lisa-tiny, and a tiny random-weight model built from its config with a
fixed seed (``write_tiny_model(seed=0)``), whose lm_head is given a bias towards [SEG] so that
generation really produces some (a random model otherwise never does).
Images: a shapes scene lisa-tiny segments correctly, that scene as a large landscape
(1500x700) and as a portrait (180x300), and a very small noise image (9x5).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pycocotools import mask as mask_utils

GOLDEN_DIR = Path(__file__).resolve().parent
QUERY = "What is the diamond in this image? Please output segmentation mask."
SEG_BIAS = 0.5  # added to the random model's [SEG] logit: some steps pick [SEG], others not
# The random SAM's mask logits are ~1e-3, so each pixel's sign would be float noise; scaling
# the decoder's hypernetwork output layer (weight and bias) scales every logit by this factor
# exactly, so the masks keep their sign pattern but become stable under rounding.
MASK_GAIN = 300.0


def scene() -> np.ndarray:
    """Validation scene 5 of the default shapes world (seed 0, 256 px): one grey diamond among
    other shapes, which lisa-tiny segments with IoU 0.86."""
    from lisa.data.shapes.generate import SPLIT_IDS, pick_reasoning

    rng = np.random.default_rng([0, SPLIT_IDS["val"], 5])
    return pick_reasoning(rng, 256, "val")[0].image


def images() -> dict[str, np.ndarray]:
    base = Image.fromarray(scene())
    noise = np.random.default_rng(7).integers(0, 256, (5, 9, 3), dtype=np.uint8)
    return {
        "square_256": np.asarray(base),
        "landscape_1500x700": np.asarray(base.resize((1500, 700), Image.BILINEAR)),
        "portrait_180x300": np.asarray(base.resize((180, 300), Image.BILINEAR)),
        "tiny_9x5": noise,
    }


@dataclass(frozen=True)
class Case:
    name: str
    image: str
    query: str
    answer: str | None  # None: generated; a string: teacher-forced with this answer


CASES = [
    *(Case(f"generate_{image}", image, QUERY, None) for image in ("square_256", "landscape_1500x700", "portrait_180x300", "tiny_9x5")),
    *(Case(f"forced_{image}", image, QUERY, "Sure, [SEG].") for image in ("square_256", "landscape_1500x700", "portrait_180x300", "tiny_9x5")),
    Case("generate_two_seg_square", "square_256", "Is there a car in this image?", None),
    Case("forced_two_seg_portrait", "portrait_180x300", "Segment the diamond and the heart.", "[SEG] and [SEG]."),
]
# (model, dtype) pairs; each has its own file tests/golden/<model>-<dtype>.json
CONFIGS = [("random-tiny", "float32"), ("lisa-tiny", "float32"), ("lisa-tiny", "bfloat16"), ("random-tiny", "bfloat16")]
MAX_NEW_TOKENS = 12


def golden_path(model: str, dtype: str) -> Path:
    return GOLDEN_DIR / f"{model}-{dtype}.json"


def load_pipeline(model: str, dtype: str, scratch: Path):
    from lisa.inference.pipeline import LisaPipeline
    from lisa.model.build import write_tiny_model

    if model == "lisa-tiny":
        return LisaPipeline.from_pretrained("lisa-tiny", device="cpu", dtype=dtype)
    directory = write_tiny_model(scratch / "random-tiny", seed=0)
    pipe = LisaPipeline.from_pretrained(directory, device="cpu", dtype=dtype)
    lm_head = pipe.model.vlm.lm_head
    bias = torch.zeros(lm_head.out_features, dtype=lm_head.weight.dtype)
    bias[pipe.model.config.seg_token_id] = SEG_BIAS
    lm_head.bias = torch.nn.Parameter(bias, requires_grad=False)
    with torch.no_grad():
        for mlp in pipe.model.sam.mask_decoder.output_hypernetworks_mlps:
            mlp.proj_out.weight.mul_(MASK_GAIN)
            mlp.proj_out.bias.mul_(MASK_GAIN)
    return pipe


def encode_masks(masks: np.ndarray) -> list[dict]:
    out = []
    for mask in masks:
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        out.append({"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")})
    return out


def decode_masks(rles: list[dict], height: int, width: int) -> np.ndarray:
    if not rles:
        return np.zeros((0, height, width), dtype=bool)
    return np.stack([mask_utils.decode({"size": r["size"], "counts": r["counts"].encode("ascii")}) for r in rles]).astype(bool)


def run_case(pipe, case: Case, image: np.ndarray) -> dict:
    """One call through the public pipeline (text, masks, scores) and the [SEG] hidden states
    that produced those masks."""
    # raw: the query is sent as written (the wording helper has tests of its own)
    if case.answer is None:
        result = pipe(image, case.query, max_new_tokens=MAX_NEW_TOKENS, raw=True)
    else:
        result = pipe(image, case.query, answers=case.answer, raw=True)
    hidden = seg_hidden_states(pipe, image, case.query, case.answer)
    return {
        "image": case.image,
        "size": list(image.shape[:2]),
        "query": case.query,
        "answer": case.answer,
        "text": result.text,
        "masks": encode_masks(result.masks),
        "scores": [round(float(s), 6) for s in result.scores],
        "seg_hidden": [[round(float(v), 5) for v in row] for row in hidden.float().tolist()],
    }


@torch.no_grad()
def seg_hidden_states(pipe, image: np.ndarray, query: str, answer: str | None) -> torch.Tensor:
    """[n_seg, D] hidden states that predicted each [SEG] of the answer, from ``LisaModel``'s
    own segmentation path (the image is cached by the pipeline call just made)."""
    from lisa.data.image_io import load_image
    from lisa.inference.pipeline import _image_key, _pad_left
    from lisa.model.lisa import ImageEncoding

    entry = pipe._cache[_image_key(load_image(image))]
    encoded = ImageEncoding(entry.features[None], entry.sam_embedding[None], [entry.resized_size], [entry.original_size])
    ids, attention = _pad_left([pipe.builder.build([(query, answer)]).input_ids], pipe.pad_id, pipe.model.device)
    index = torch.tensor([0])
    if answer is None:
        segmentation = pipe.model.generate_segmentation(
            ids, attention, encoded, index, MAX_NEW_TOKENS, pipe.builder.stop_ids, pipe.banned_ids
        )
    else:
        segmentation = pipe.model.teacher_forced_segmentation(ids, attention, encoded, index)
    return segmentation.seg_hidden[0]


def run_cases(model: str, dtype: str, scratch: Path) -> dict:
    pipe = load_pipeline(model, dtype, scratch)
    pictures = images()
    return {
        "model": model,
        "dtype": dtype,
        "max_new_tokens": MAX_NEW_TOKENS,
        "cases": {case.name: run_case(pipe, case, pictures[case.image]) for case in CASES},
    }


def write(data: dict, path: Path) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
