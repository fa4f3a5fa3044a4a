"""Sample a scene, draw it, and read back exact instance and part masks.

Drawing goes through one label map (`part_ids`, one id per part, later parts overwrite earlier
ones), and the RGB image is painted from that map. So every visible mask is exact by
construction: the pixels a part owns in the label map are exactly the pixels painted with it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from lisa.data.shapes.geometry import SHAPE_KINDS
from lisa.data.shapes.objects import (COLOURS, FILLS, SIZE_RADIUS, SIZES, THINGS, SceneObject,
                                      make_shape, make_thing)

SUBPIXEL_BITS = 4  # fillPoly fixed-point precision: vertices need not sit on pixel centres
MIN_OBJECT_VISIBLE = 0.7  # share of an object that must stay visible after occlusion
MIN_PART_VISIBLE = 0.6  # share of each part (as drawn within its object) that must stay visible
THING_SCALE = 1.35  # things have parts, so they are drawn a bit larger than shapes
MAX_OBJECTS = 8

Target = tuple[int, "str | None"]  # (object index, part name or None for the whole object)


@dataclass
class ObjectSpec:
    """Constraints for one object to sample; None = free."""

    kind: str | None = None
    colour: str | None = None
    size: str | None = None
    fill: str | None = None


@dataclass
class Scene:
    size: int
    objects: list[SceneObject]  # back to front
    image: np.ndarray  # [H, W, 3] uint8 RGB
    part_ids: np.ndarray  # [H, W] uint16: 0 background, k + 1 = part_index[k]
    part_index: list[tuple[int, str]] = field(default_factory=list)  # (object index, part name)

    def object_mask(self, index: int) -> np.ndarray:
        ids = [k + 1 for k, (i, _) in enumerate(self.part_index) if i == index]
        return np.isin(self.part_ids, ids)

    def part_mask(self, index: int, name: str) -> np.ndarray:
        ids = [k + 1 for k, (i, n) in enumerate(self.part_index) if i == index and n == name]
        return np.isin(self.part_ids, ids)

    def target_mask(self, targets: list[Target]) -> np.ndarray:
        """Union of the visible masks of the targets, [H, W] bool."""
        mask = np.zeros(self.part_ids.shape, dtype=bool)
        for index, part in targets:
            mask |= self.object_mask(index) if part is None else self.part_mask(index, part)
        return mask

    def area(self, index: int) -> int:
        return int(self.object_mask(index).sum())


def rasterize(polygons: list[np.ndarray], size: int, canvas: np.ndarray | None = None,
              value: int = 1) -> np.ndarray:
    """Fill float polygons into ``canvas`` (new [size, size] uint16 if None) with ``value``."""
    if canvas is None:
        canvas = np.zeros((size, size), dtype=np.uint16)
    fixed = [np.round(p * (1 << SUBPIXEL_BITS)).astype(np.int32) for p in polygons]
    cv2.fillPoly(canvas, fixed, int(value), cv2.LINE_8, SUBPIXEL_BITS)
    return canvas


def label_map(objects: list[SceneObject], size: int) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """Draw all parts back to front into one id map."""
    part_ids = np.zeros((size, size), dtype=np.uint16)
    index: list[tuple[int, str]] = []
    for i, obj in enumerate(objects):
        for part in obj.parts:
            index.append((i, part.name))
            rasterize(part.polygons, size, part_ids, len(index))
    return part_ids, index


# --- painting ---------------------------------------------------------------------------------


def pattern_colour(rgb: tuple[int, int, int]) -> np.ndarray:
    """Second colour of striped / dotted fills: darker for light colours, lighter for dark."""
    c = np.array(rgb, dtype=float)
    luminance = 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
    out = c * 0.5 if luminance > 110 else c + (255 - c) * 0.6
    return out.round().astype(np.uint8)


def fill_patterns(size: int) -> dict[str, np.ndarray]:
    """Where the second colour goes for each fill, [H, W] bool, in image coordinates."""
    yy, xx = np.mgrid[0:size, 0:size]
    return {
        "solid": np.zeros((size, size), dtype=bool),
        "striped": ((xx + yy) // 4) % 2 == 1,  # diagonal stripes, period ~6 px
        "dotted": (xx % 8 >= 3) & (xx % 8 <= 5) & (yy % 8 >= 3) & (yy % 8 <= 5),  # 3x3 dots
    }


def background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Pale plain colour, pale gradient, or pale colour with light noise: [H, W, 3] uint8."""
    style = rng.choice(["plain", "gradient", "noise"])
    base = rng.integers(200, 251, size=3).astype(float)
    image = np.broadcast_to(base, (size, size, 3)).copy()
    if style == "gradient":
        other = rng.integers(200, 251, size=3).astype(float)
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
        t = (np.cos(angle) * xx + np.sin(angle) * yy)
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
        image = base * (1 - t[..., None]) + other * t[..., None]
    elif style == "noise":
        image = image + rng.normal(0, 5, size=image.shape)
    return np.clip(image.round(), 0, 255).astype(np.uint8)


def paint(objects: list[SceneObject], part_ids: np.ndarray, part_index: list[tuple[int, str]],
          bg: np.ndarray) -> np.ndarray:
    image = bg.copy()
    patterns = fill_patterns(part_ids.shape[0])
    for k, (i, name) in enumerate(part_index):
        part = objects[i].part(name)
        assert part is not None
        owned = part_ids == k + 1
        second = owned & patterns[part.fill]
        image[owned & ~second] = COLOURS[part.colour]
        image[second] = pattern_colour(COLOURS[part.colour])
    return image


# --- sampling ---------------------------------------------------------------------------------


def sample_object(rng: np.random.Generator, spec: ObjectSpec, size: int,
                  thing_rate: float = 0.3) -> SceneObject:
    """One object satisfying ``spec``, at a random position fully inside the image."""
    kind = spec.kind
    if kind is None:
        wants_thing = spec.colour is None and rng.random() < thing_rate
        kind = str(rng.choice(list(THINGS) if wants_thing else list(SHAPE_KINDS)))
    if kind in THINGS:
        palette = THINGS[kind][1]
        colour = spec.colour if spec.colour in palette else str(rng.choice(palette))
        obj_size = spec.size or str(rng.choice(["medium", "large"]))
        scale = THING_SCALE
    else:
        colour = spec.colour or str(rng.choice(list(COLOURS)))
        obj_size = spec.size or str(rng.choice(SIZES))
        scale = 1.0
    low, high = SIZE_RADIUS[obj_size]
    radius = float(rng.uniform(low, high)) * size * scale
    margin = radius + 2
    cx, cy = (float(v) for v in rng.uniform(margin, size - margin, size=2))
    if kind in THINGS:
        return make_thing(kind, colour, obj_size, cx, cy, radius)
    fill = spec.fill or str(rng.choice(FILLS, p=[0.5, 0.25, 0.25]))
    return make_shape(kind, colour, obj_size, fill, cx, cy, radius)


@dataclass
class _Placed:
    full: np.ndarray  # [H, W] bool, the object drawn alone
    parts: list[np.ndarray]  # each part as visible within the object alone
    visible: np.ndarray  # [H, W] bool, after everything on top of it


def _drawn_alone(obj: SceneObject, size: int) -> _Placed:
    ids, _ = label_map([obj], size)
    parts = [ids == k + 1 for k in range(len(obj.parts))]
    full = ids > 0
    return _Placed(full, parts, full.copy())


def _still_visible(placed: _Placed, cover: np.ndarray) -> bool:
    visible = placed.visible & ~cover
    if visible.sum() < MIN_OBJECT_VISIBLE * placed.full.sum():
        return False
    return all((p & visible).sum() >= MIN_PART_VISIBLE * p.sum() for p in placed.parts)


def place_objects(rng: np.random.Generator, specs: list[ObjectSpec], size: int,
                  tries: int = 25) -> list[SceneObject]:
    """Place objects back to front; an object that would hide too much of another is moved,
    and dropped after ``tries`` failed positions."""
    objects: list[SceneObject] = []
    placed: list[_Placed] = []
    for spec in specs:
        for _ in range(tries):
            obj = sample_object(rng, spec, size)
            new = _drawn_alone(obj, size)
            if all(_still_visible(p, new.full) for p in placed):
                for p in placed:
                    p.visible &= ~new.full
                objects.append(obj)
                placed.append(new)
                break
    return objects


def render(objects: list[SceneObject], size: int, bg: np.ndarray) -> Scene:
    part_ids, part_index = label_map(objects, size)
    image = paint(objects, part_ids, part_index, bg)
    return Scene(size, objects, image, part_ids, part_index)


def sample_scene(rng: np.random.Generator, size: int, planted: ObjectSpec | None = None,
                 max_objects: int = MAX_OBJECTS) -> Scene:
    """A scene with 1 to ``max_objects`` objects; ``planted`` (if given) is guaranteed to be among them."""
    n = int(rng.integers(1, max_objects + 1))
    specs = [ObjectSpec() for _ in range(n)]
    if planted is not None:
        specs[int(rng.integers(0, n))] = planted
    while True:
        objects = place_objects(rng, specs, size)
        if planted is None or any(_satisfies(o, planted) for o in objects):
            break
    return render(objects, size, background(rng, size))


def _satisfies(obj: SceneObject, spec: ObjectSpec) -> bool:
    return all(want is None or want == have for want, have in
               [(spec.kind, obj.kind), (spec.colour, obj.colour), (spec.size, obj.size),
                (spec.fill, obj.fill)])
