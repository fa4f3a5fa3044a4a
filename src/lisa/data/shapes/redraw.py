"""Redraw a scene, or one query's true mask, from the generator instead of from files: every
scene draws from its own RNG (``generate.py``), so split, index and seed fix it exactly. The
repository's example images are test scenes; their true masks come from here."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np

from lisa.data.polygons import coco_rle_mask
from lisa.data.shapes.generate import SPLIT_IDS, generate_scene, pick_reasoning
from lisa.data.shapes.queries import Query
from lisa.data.shapes.scene import MAX_OBJECTS, Scene
from lisa.errors import LisaError


def redraw_scene(split: str, index: int, seed: int = 0, size: int = 256,
                 max_objects: int = MAX_OBJECTS) -> tuple[Scene, Query]:
    """Scene ``index`` of ``split`` and its reasoning query, as ``lisa shapes generate`` drew them
    (``max_objects``: the world's ``--max-objects``, in its meta file when not the default)."""
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
    scene, reasoning, _ = pick_reasoning(rng, size, split, max_objects)
    return scene, reasoning


def redraw_target(split: str, index: int, family: str, query: str | None = None, seed: int = 0,
                  size: int = 256) -> np.ndarray:
    """[size, size] bool: scene ``index``'s reasoning target (``family="reasoning"``), or the union
    of the targets of its ``family`` record (semantic, referring, ...) whose query is ``query``."""
    if family == "reasoning":
        scene, reasoning = redraw_scene(split, index, seed, size)
        return scene.target_mask(reasoning.targets)
    records: dict[str, list[dict]] = defaultdict(list)
    with TemporaryDirectory() as scratch:  # the generator writes the scene's image; only its records are kept
        generate_scene(Path(scratch), split, index, seed, size, records, Counter())
    found = [r for r in records[family] if r["query"] == query]
    if not found:
        raise LisaError(f"{split} scene {index} (seed {seed}) has no {family} query {query!r}")
    return record_mask(found[0], size)


def record_mask(record: dict, size: int) -> np.ndarray:
    """[size, size] bool: the union of a shapes record's RLE targets (empty when it has none)."""
    mask = np.zeros((size, size), dtype=bool)
    for target in record["targets"]:
        mask |= coco_rle_mask(target["rle"], size, size).astype(bool)
    return mask
