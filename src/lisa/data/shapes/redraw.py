"""Redraw one query's true mask from the generator instead of from files: every scene draws from
its own RNG (``generate.py``), so split, index and seed fix it exactly. The repository's example
images are test scenes; their true masks come from here."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from tempfile import TemporaryDirectory

import numpy as np
from pycocotools import mask as mask_utils

from lisa.data.shapes.generate import SPLIT_IDS, generate_scene, pick_reasoning
from lisa.errors import LisaError


def redraw_target(split: str, index: int, family: str, query: str | None = None, seed: int = 0,
                  size: int = 256) -> np.ndarray:
    """[size, size] bool: scene ``index``'s reasoning target (``family="reasoning"``), or the union
    of the targets of its ``family`` record (semantic, referring, ...) whose query is ``query``."""
    if family == "reasoning":
        scene, reasoning, _ = pick_reasoning(np.random.default_rng([seed, SPLIT_IDS[split], index]), size, split)
        return scene.target_mask(reasoning.targets)
    records: dict[str, list[dict]] = defaultdict(list)
    with TemporaryDirectory() as scratch:  # the generator writes the scene's image; only its records are kept
        generate_scene(Path(scratch), split, index, seed, size, records, Counter())
    found = [r for r in records[family] if r["query"] == query]
    if not found:
        raise LisaError(f"{split} scene {index} (seed {seed}) has no {family} query {query!r}")
    mask = np.zeros((size, size), dtype=bool)
    for target in found[0]["targets"]:
        rle = target["rle"]
        mask |= mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)
    return mask
