"""Diagnostic for the README: does a model's [SEG] prompt depend on the query?

For test images with several referring queries, the queries are teacher-forced ("Sure, it is
[SEG].") and the prompts the seg head sends to SAM are compared: mean pairwise cosine between
different queries of the same image, and how many distinct masks those queries get. A cosine near
1 and one mask per image mean the mask decoder is asked the same thing whatever the query.

    python configs/tiny-shapes/probe_seg_prompts.py --model runs/lisa-tiny/3-lisa/model [--images 40]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

from lisa import LisaPipeline
from lisa.data.image_io import load_image

TEMPLATE = "What is {} in this image? Please output segmentation mask."


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default="data/shapes/test")
    parser.add_argument("--images", type=int, default=40)
    args = parser.parse_args()
    pipe = LisaPipeline.from_pretrained(args.model)
    captured: list[torch.Tensor] = []
    pipe.model.seg_head.register_forward_hook(lambda module, inputs, output: captured.append(output.detach().float()))
    queries: dict[str, list[str]] = defaultdict(list)
    for line in (Path(args.data) / "referring.jsonl").read_text().splitlines():
        record = json.loads(line)
        queries[record["image"]].append(record["query"])
    cosines, distinct, per_image = [], [], []
    for name, texts in list((k, v) for k, v in queries.items() if len(v) > 1)[: args.images]:
        captured.clear()
        image = load_image(Path(args.data) / name)
        results = pipe([image] * len(texts), [TEMPLATE.format(t) for t in texts], answers=["Sure, it is [SEG]."] * len(texts))
        prompts = torch.nn.functional.normalize(torch.cat(captured), dim=-1)
        similarity = prompts @ prompts.T
        cosines.append(similarity[~torch.eye(len(texts), dtype=torch.bool)].mean().item())
        distinct.append(len({r.masks.tobytes() for r in results}))
        per_image.append(len(texts))
    print(f"{args.model}: {len(cosines)} images, {np.mean(per_image):.2f} queries each; "
          f"mean cosine between prompts of different queries {np.mean(cosines):.3f}; "
          f"distinct masks per image {np.mean(distinct):.2f}")


if __name__ == "__main__":
    main()
