"""Diagnostic for the README: can a linear probe read an object's colour from the frozen
stage-1 SAM embedding (mask-averaged over the object)? Low accuracy means the mask decoder
cannot find "the red circle" from a text prompt, whatever the LLM sends it.

    python configs/tiny-shapes/probe_sam_colour.py [--sam runs/lisa-tiny/1-sam/sam]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from transformers import SamModel

from lisa.data.image_io import load_image
from lisa.data.jsonl import decode_target, read_records
from lisa.data.transforms import sam_view

COLOURS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "grey", "black", "white"]


@torch.no_grad()
def features(sam: SamModel, folder: Path, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask-averaged embeddings [N, C] and colour labels [N] of single-colour referring records."""
    rows, labels, cache = [], [], {}
    size = sam.config.vision_config.image_size
    for record in read_records(folder, None, ["referring"])[:limit]:
        named = [c for c in COLOURS if c in record.query.split()]
        if len(record.targets) != 1 or len(named) != 1:
            continue
        image = load_image(record.image)
        if str(record.image) not in cache:
            cache[str(record.image)] = sam.get_image_embeddings(sam_view(image, size).pixels[None])[0]
        embedding = cache[str(record.image)]  # [C, h, w]
        mask = torch.from_numpy(decode_target(record.targets[0], record.image.parent, *image.shape[:2]).astype(np.float32))
        weights = F.adaptive_avg_pool2d(mask[None, None], embedding.shape[-2:])[0, 0]
        if weights.sum() > 1e-3:
            rows.append((embedding * weights).sum((1, 2)) / weights.sum())
            labels.append(COLOURS.index(named[0]))
    return torch.stack(rows), torch.tensor(labels)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sam", default="runs/lisa-tiny/1-sam/sam")
    parser.add_argument("--data", default="data/shapes")
    args = parser.parse_args()
    torch.manual_seed(0)
    sam = SamModel.from_pretrained(args.sam).eval()
    x_train, y_train = features(sam, Path(args.data) / "train", 1500)
    x_val, y_val = features(sam, Path(args.data) / "val", 400)
    mean, std = x_train.mean(0), x_train.std(0) + 1e-6
    x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
    weight = torch.zeros(x_train.shape[1], len(COLOURS), requires_grad=True)
    bias = torch.zeros(len(COLOURS), requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=1e-2)
    for _ in range(500):
        loss = F.cross_entropy(x_train @ weight + bias, y_train)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    accuracy = ((x_val @ weight + bias).argmax(1) == y_val).float().mean().item()
    print(f"colour probe on frozen SAM embeddings: train n={len(y_train)} val n={len(y_val)} "
          f"val accuracy={accuracy:.3f} (chance {1 / len(COLOURS):.3f})")


if __name__ == "__main__":
    main()
