"""Per-cell labels of a scene on a grid: what covers each cell (kind, colour) and where it is.

The targets of stage 2a (`configs/tiny-shapes/train_vision_cells.py`), which teaches the tiny
VLM's vision tower to keep kind, colour and place in each image token, and of the linear probes
that read them back (`configs/tiny-shapes/probe_vlm_tokens.py`).
"""

from __future__ import annotations

import numpy as np

from lisa.data.shapes.geometry import SHAPE_KINDS
from lisa.data.shapes.objects import COLOURS, THING_KINDS
from lisa.data.shapes.redraw import redraw_scene
from lisa.data.shapes.scene import Scene

KINDS: tuple[str, ...] = ("background", *SHAPE_KINDS, *THING_KINDS)
COLOUR_NAMES: tuple[str, ...] = ("background", *COLOURS)
COVERED = 1 / 3  # a cell is an object's when the object covers at least this share of it


def cell_labels(scene: Scene, grid: int) -> tuple[np.ndarray, np.ndarray]:
    """Kind and colour ids (indices into KINDS / COLOUR_NAMES; 0: background) [grid * grid], row
    by row, of the object that covers the largest share (at least COVERED) of each cell."""
    size = scene.image.shape[0]
    if scene.image.shape[1] != size or size % grid:
        raise ValueError(f"a square scene whose side divides into {grid} cells, got {scene.image.shape[:2]}")
    kind = np.zeros(grid * grid, dtype=np.int64)
    colour = np.zeros(grid * grid, dtype=np.int64)
    best = np.full(grid * grid, COVERED)
    step = size // grid
    for i, obj in enumerate(scene.objects):
        share = scene.object_mask(i).reshape(grid, step, grid, step).mean(axis=(1, 3)).ravel()
        mine = share >= best  # a tie goes to the later object, drawn on top
        kind[mine] = KINDS.index(obj.kind)
        colour[mine] = COLOUR_NAMES.index(obj.colour)
        best = np.maximum(best, share)
    return kind, colour


def labelled_scenes(split: str, indices: range, seed: int, grid: int) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
    """Images and per-cell kind and colour labels of scenes ``indices`` of a split, redrawn by
    the generator (a module-level function, so that worker processes can run it)."""
    images, kinds, colours = [], [], []
    for index in indices:
        scene = redraw_scene(split, index, seed)[0]
        kind, colour = cell_labels(scene, grid)
        images.append(scene.image)
        kinds.append(kind)
        colours.append(colour)
    return images, kinds, colours
