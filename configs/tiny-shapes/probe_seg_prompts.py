"""Diagnostic for the README: does a model's [SEG] prompt depend on the query?

Referring queries are teacher-forced ("Sure, it is [SEG].") and two things are measured:
1. on test images with several queries, the prompts the seg head sends to SAM: mean pairwise
   cosine between different queries of the same image, and how many distinct masks they get
   (a cosine near 1 and one mask per image: the decoder is asked the same thing every time);
2. linear probes (fit on train queries, scored on val queries) reading the queried colour and
   kind from the [SEG] state (the seg head's input) and from the prompt (its output): whether
   the query is in there at all.

    python configs/tiny-shapes/probe_seg_prompts.py --model runs/lisa-tiny/3-lisa/model
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lisa import LisaPipeline
from lisa.data.image_io import load_image

TEMPLATE = "What is {} in this image? Please output segmentation mask."
KINDS = ["circle", "triangle", "square", "rectangle", "pentagon", "hexagon", "octagon", "star", "heart", "cross",
         "crescent", "diamond", "arrow"]
COLOURS = ["red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "grey", "black", "white"]


class Recorder:
    """Collects the seg head's inputs ([SEG] states) and outputs (prompts)."""

    def __init__(self, pipe: LisaPipeline) -> None:
        self.states: list[torch.Tensor] = []
        self.prompts: list[torch.Tensor] = []
        pipe.model.seg_head.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        self.states.append(inputs[0].detach().float())
        self.prompts.append(output.detach().float())

    def take(self) -> tuple[torch.Tensor, torch.Tensor]:
        states, prompts = torch.cat(self.states), torch.cat(self.prompts)
        self.states.clear()
        self.prompts.clear()
        return states, prompts


def queries_by_image(folder: Path, limit: int) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for line in (folder / "referring.jsonl").read_text().splitlines()[:limit]:
        record = json.loads(line)
        grouped[record["image"]].append(record["query"])
    return grouped


def run(pipe: LisaPipeline, recorder: Recorder, folder: Path, image: str, texts: list[str]):
    results = pipe([load_image(folder / image)] * len(texts), [TEMPLATE.format(t) for t in texts],
                   answers=["Sure, it is [SEG]."] * len(texts))
    return results, *recorder.take()


def label(text: str, words: list[str]) -> int:
    found = [w for w in words if w in text.split()]
    return words.index(found[0]) if len(found) == 1 else -1


def probe_accuracy(train: tuple[torch.Tensor, torch.Tensor], val: tuple[torch.Tensor, torch.Tensor], classes: int) -> float:
    (x, y), (xv, yv) = train, val
    mean, std = x.mean(0), x.std(0) + 1e-6
    x, xv = (x - mean) / std, (xv - mean) / std
    weight = torch.zeros(x.shape[1], classes, requires_grad=True)
    bias = torch.zeros(classes, requires_grad=True)
    optimizer = torch.optim.Adam([weight, bias], lr=1e-2)
    for _ in range(300):
        loss = F.cross_entropy(x @ weight + bias, y) + 1e-3 * weight.square().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return ((xv @ weight + bias).argmax(1) == yv).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", default="data/shapes")
    parser.add_argument("--images", type=int, default=40, help="test images for the cosine / distinct-mask part")
    args = parser.parse_args()
    torch.manual_seed(0)
    pipe = LisaPipeline.from_pretrained(args.model)
    recorder = Recorder(pipe)
    data = Path(args.data)

    cosines, distinct, per_image = [], [], []
    test = [(k, v) for k, v in queries_by_image(data / "test", 10**9).items() if len(v) > 1][: args.images]
    for image, texts in test:
        results, _, prompts = run(pipe, recorder, data / "test", image, texts)
        unit = F.normalize(prompts, dim=-1)
        cosines.append((unit @ unit.T)[~torch.eye(len(texts), dtype=torch.bool)].mean().item())
        distinct.append(len({r.masks.tobytes() for r in results}))
        per_image.append(len(texts))
    print(f"{args.model}: {len(cosines)} test images, {np.mean(per_image):.2f} queries each; mean cosine between "
          f"prompts of different queries {np.mean(cosines):.3f}; distinct masks per image {np.mean(distinct):.2f}")

    rows: dict[str, list[tuple[torch.Tensor, torch.Tensor, str]]] = {"train": [], "val": []}
    for split, limit in (("train", 600), ("val", 300)):
        for image, texts in queries_by_image(data / split, limit).items():
            _, states, prompts = run(pipe, recorder, data / split, image, texts)
            rows[split] += list(zip(states, prompts, texts))
    for name, column in (("[SEG] state", 0), ("prompt", 1)):
        for family, words in (("colour", COLOURS), ("kind", KINDS)):
            sets = []
            for split in ("train", "val"):
                kept = [(r[column], label(r[2], words)) for r in rows[split] if label(r[2], words) >= 0]
                sets.append((torch.stack([k[0] for k in kept]), torch.tensor([k[1] for k in kept])))
            majority = np.bincount(sets[1][1].numpy()).max() / len(sets[1][1])
            print(f"  linear probe, queried {family} from the {name}: val accuracy "
                  f"{probe_accuracy(sets[0], sets[1], len(words)):.3f} (n={len(sets[1][1])}, majority {majority:.3f})")


if __name__ == "__main__":
    main()
