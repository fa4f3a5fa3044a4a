"""Where a stage-1 SAM loses mask quality: box-prompted IoU by kind of target (flat shapes,
whole things, parts) and by size, next to what the SAM's mask grid allows.

    python configs/tiny-shapes/probe_sam_masks.py --sam RUN/sam --data data/shapes/val [--count 400]

Each instance of the folder is a target of its semantic records (class: a shape kind such as
"oval", a thing such as "umbrella", or a part such as "handle"). Prompts are the jittered boxes
of stage 1 (the same as the stage's val_box_miou). "grid bound" is the IoU of the true mask
averaged over the cells of the SAM's low-resolution grid, upsampled bilinearly the way
predicted logits are, and thresholded at 0.5: what a perfect predictor at that grid would reach.
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lisa.data.image_io import load_image
from lisa.data.jsonl import decode_target, read_records
from lisa.data.shapes.objects import ALL_PART_NAMES, THING_KINDS
from lisa.data.transforms import sam_view
from lisa.model.sam import upscale_masks
from lisa.train.model_setup import load_sam
from lisa.train.sam_pretrain import _box_prompt


def category(name: str) -> str:
    return "part" if name in ALL_PART_NAMES else "thing" if name in THING_KINDS else "flat shape"


def size_bucket(area: int) -> str:
    return "area < 1000 px" if area < 1000 else "area 1000-4000 px" if area < 4000 else "area >= 4000 px"


def iou(predicted: np.ndarray, truth: np.ndarray) -> float:
    union = (predicted | truth).sum()
    return float((predicted & truth).sum() / union) if union else 1.0


def grid_bound(truth: np.ndarray, resized: tuple[int, int], input_size: int, grid: int) -> float:
    """IoU of the area-averaged true mask at the SAM's grid, upsampled as logits are."""
    padded = torch.zeros(1, 1, input_size, input_size)
    view = F.interpolate(torch.from_numpy(truth.astype(np.float32))[None, None], resized, mode="bilinear",
                         align_corners=False)
    padded[..., : resized[0], : resized[1]] = view
    coarse = F.adaptive_avg_pool2d(padded, grid)[0] - 0.5  # > 0 where the cell is mostly object
    back = upscale_masks(coarse, input_size, resized, truth.shape)[0].numpy() > 0
    return iou(back, truth)


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sam", required=True, help="a SAM folder (RUN/sam of a SAM stage)")
    parser.add_argument("--data", type=Path, required=True, help="a JSONL folder with semantic.jsonl, e.g. data/shapes/val")
    parser.add_argument("--count", type=int, default=400, help="instances drawn (seed 1)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sam = load_sam(args.sam).eval()
    size = sam.config.vision_config.image_size
    grid = 4 * size // sam.config.vision_config.patch_size
    instances = [(record, target) for record in read_records(args.data, None, ["semantic"]) for target in record.targets]
    rng = random.Random(1)
    scores: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for record, target in rng.sample(instances, min(args.count, len(instances))):
        image = load_image(record.image)
        truth = decode_target(target, record.image.parent, *image.shape[:2]) > 0
        if not truth.any():
            continue
        view = sam_view(image, size)
        box = _box_prompt(truth, rng, view.resized_size[0] / image.shape[0])
        out = sam(pixel_values=view.pixels[None], input_boxes=torch.tensor([[box]]), multimask_output=False)
        logits = upscale_masks(out.pred_masks[:, 0, 0], size, view.resized_size, truth.shape)[0]
        pair = (iou(logits.numpy() > 0, truth), grid_bound(truth, view.resized_size, size, grid))
        for key in ("all", category(record.query), size_bucket(int(truth.sum()))):
            scores[key].append(pair)
    print(f"{args.sam}: box-prompted IoU on {len(scores['all'])} instances of {args.data} (grid {grid}x{grid})")
    print(f"{'targets':20} {'n':>4} {'mIoU':>6} {'p10':>6} {'grid bound':>10}")
    for key in ("all", "flat shape", "thing", "part", "area < 1000 px", "area 1000-4000 px", "area >= 4000 px"):
        if scores[key]:
            values = np.array(scores[key])
            print(f"{key:20} {len(values):4d} {values[:, 0].mean():6.3f} {np.percentile(values[:, 0], 10):6.3f} "
                  f"{values[:, 1].mean():10.3f}")


if __name__ == "__main__":
    main()
