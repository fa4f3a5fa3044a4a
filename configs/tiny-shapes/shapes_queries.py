"""What the [SEG] probes share: the shapes world's queries with a target, each with its image,
target mask, redrawn scene and main object, and the arguments every probe takes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lisa.data.shapes.cells import COLOUR_NAMES, KINDS
from lisa.data.shapes.redraw import record_mask, redraw_scene
from lisa.data.shapes.scene import Scene


class ShapesQuery(NamedTuple):
    image: str | np.ndarray  # a path (referring records) or the redrawn pixels (reasoning)
    query: str
    truth: np.ndarray  # [size, size] bool: the union of the targets
    scene: Scene  # as `lisa shapes generate` drew it
    # The queried object: a reasoning query's first target; for a referring record (stored as a
    # mask) the object that covers most of it (main_object).
    target: int


def add_probe_arguments(parser: argparse.ArgumentParser, family: bool = True) -> None:
    """--model, --data-dir, --threads and (family=True) --family."""
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("data/shapes"))
    if family:
        parser.add_argument("--family", choices=["referring", "reasoning"], default="referring",
                            help="reasoning: the reasoning query of each scene, redrawn (query counts are scenes)")
    parser.add_argument("--threads", default="auto")


def shapes_queries(family: str, data_dir: Path, split: str, limit: int) -> list[ShapesQuery]:
    """The first ``limit`` referring records with a target of a split, or (reasoning) the
    reasoning queries of its first ``limit`` scenes that have a target."""
    if family == "reasoning":
        return reasoning_queries(split, limit)
    return referring_queries(data_dir / split, split, limit)


def referring_queries(split_dir: Path, split: str, limit: int) -> list[ShapesQuery]:
    records = [json.loads(line) for line in (split_dir / "referring.jsonl").open()]
    records = [r for r in records if r["targets"]][:limit]
    scenes: dict[int, Scene] = {}  # a scene has many referring records: redraw it once
    out = []
    for record in records:
        size = record["targets"][0]["rle"]["size"][0]
        index = int(Path(record["image"]).stem.split("_")[-1])
        if index not in scenes:
            scenes[index] = redraw_scene(split, index, size=size)[0]
        truth = record_mask(record, size)
        out.append(ShapesQuery(str(split_dir / record["image"]), record["query"], truth, scenes[index],
                               main_object(scenes[index], truth)))
    return out


def reasoning_queries(split: str, scenes: int) -> list[ShapesQuery]:
    out = []
    for index in range(scenes):
        scene, reasoning = redraw_scene(split, index)
        truth = scene.target_mask(reasoning.targets) if reasoning.targets else None
        if truth is not None and truth.any():
            out.append(ShapesQuery(scene.image, reasoning.texts[0], truth, scene, reasoning.targets[0][0]))
    return out


def main_object(scene: Scene, truth: np.ndarray) -> int:
    """The index of the scene's object that covers most of ``truth``."""
    return max(range(len(scene.objects)), key=lambda i: int((scene.object_mask(i) & truth).sum()))


def names(query: str) -> str:
    """What a query names of its target: "colour", "kind", "colour and kind" or "other"."""
    words = set(query.replace("-", " ").split())
    colour, kind = bool(words & set(COLOUR_NAMES[1:])), bool(words & set(KINDS[1:]))
    return {(True, True): "colour and kind", (True, False): "colour", (False, True): "kind"}.get((colour, kind), "other")
