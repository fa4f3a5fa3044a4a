"""What a scene is made of: colours, fills, sizes, simple shapes and composite things with parts.

A `SceneObject` is a list of `Part`s, each a few polygons in image coordinates with one colour
and one fill. A simple shape has one part (named after its kind); a composite thing (house,
tree, ...) has several named parts (roof, door, ...), drawn in order, later parts on top.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from lisa.data.shapes.geometry import SHAPE_OUTLINES, SIDES, place, rect, regular_polygon

# Saturated, well separated colours with plain names (RGB). Backgrounds are pale, so none clash.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (245, 130, 20),
    "yellow": (240, 210, 20),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "purple": (130, 40, 170),
    "pink": (245, 110, 180),
    "brown": (120, 70, 30),
    "black": (20, 20, 20),
    "grey": (128, 128, 128),
    "cyan": (20, 200, 220),
}
FILLS: tuple[str, ...] = ("solid", "striped", "dotted")
SIZES: tuple[str, ...] = ("small", "medium", "large")
# Radius ranges as a fraction of the image side; gaps between buckets keep "small" unambiguous.
SIZE_RADIUS: dict[str, tuple[float, float]] = {
    "small": (0.055, 0.068),
    "medium": (0.085, 0.105),
    "large": (0.125, 0.15),
}


@dataclass
class Part:
    name: str  # "body" for simple shapes; "roof", "door", ... for composite things
    colour: str
    fill: str
    polygons: list[np.ndarray]  # each [N, 2] float (x, y) in image pixels


@dataclass
class SceneObject:
    kind: str  # shape kind ("circle") or thing ("house")
    colour: str  # the colour of the main part
    size: str  # "small" | "medium" | "large"
    fill: str  # fill of the main part
    cx: float
    cy: float
    radius: float  # half the side of the square the object fits in
    parts: list[Part] = field(default_factory=list)

    @property
    def is_thing(self) -> bool:
        return self.kind in THINGS

    @property
    def sides(self) -> int | None:
        return SIDES.get(self.kind)

    def part(self, name: str) -> Part | None:
        return next((p for p in self.parts if p.name == name), None)


def make_shape(kind: str, colour: str, size: str, fill: str, cx: float, cy: float,
               radius: float) -> SceneObject:
    body = Part("body", colour, fill, [place(SHAPE_OUTLINES[kind](), cx, cy, radius)])
    return SceneObject(kind, colour, size, fill, cx, cy, radius, [body])


# --- composite things -------------------------------------------------------------------------
# Each builder returns (part name, colour, unit polygons) in drawing order, in the unit box
# [-1, 1]^2, given the main colour. Parts are at least ~0.12 units thick so that, at the
# smallest thing size, every part is several pixels wide.

PartSpec = tuple[str, str, list[np.ndarray]]


def _shift(poly: np.ndarray, dx: float, dy: float) -> np.ndarray:
    return poly + np.array([dx, dy])


def _house(main: str) -> list[PartSpec]:
    walls = _shift(rect(0.75, 0.5), 0, 0.45)
    roof = np.array([[-0.95, -0.05], [0.0, -0.95], [0.95, -0.05]], dtype=float)
    door = _shift(rect(0.17, 0.3), -0.3, 0.65)
    window = _shift(rect(0.2, 0.17), 0.35, 0.35)
    roof_colour = "brown" if main != "brown" else "red"
    return [("walls", main, [walls]), ("roof", roof_colour, [roof]),
            ("door", "black" if main != "black" else "brown", [door]),
            ("window", "cyan", [window])]


def _tree(main: str) -> list[PartSpec]:
    trunk = _shift(rect(0.16, 0.45), 0, 0.55)
    crown = _shift(regular_polygon(48, radius=0.62), 0, -0.35)
    return [("trunk", "brown", [trunk]), ("crown", main, [crown])]


def _sun(main: str) -> list[PartSpec]:
    rays = []
    for k in range(8):  # thin triangles pointing outwards
        a = 2 * math.pi * k / 8
        tip = np.array([math.cos(a), math.sin(a)])
        side = np.array([-math.sin(a), math.cos(a)]) * 0.14
        rays.append(np.stack([0.55 * tip + side, tip, 0.55 * tip - side]))
    return [("rays", main, rays), ("disk", main, [regular_polygon(48, radius=0.6)])]


def _car(main: str) -> list[PartSpec]:
    body = np.array([[-1, 0.05], [-0.55, 0.05], [-0.35, -0.4], [0.35, -0.4], [0.55, 0.05],
                     [1, 0.05], [1, 0.5], [-1, 0.5]], dtype=float)
    window = np.array([[-0.25, -0.3], [0.25, -0.3], [0.38, 0.0], [-0.38, 0.0]], dtype=float)
    wheels = [_shift(regular_polygon(32, radius=0.26), x, 0.55) for x in (-0.55, 0.55)]
    return [("body", main, [body]), ("window", "cyan", [window]), ("wheels", "black", wheels)]


def _umbrella(main: str) -> list[PartSpec]:
    arc = np.radians(np.linspace(180, 360, 33))
    canopy = np.stack([np.cos(arc), 0.75 * np.sin(arc) - 0.05], axis=1)  # dome, flat bottom
    handle = np.array([[-0.07, -0.05], [0.07, -0.05], [0.07, 1.0], [-0.35, 1.0], [-0.35, 0.7],
                       [-0.21, 0.7], [-0.21, 0.86], [-0.07, 0.86]], dtype=float)
    handle_colour = "black" if main != "black" else "brown"
    return [("handle", handle_colour, [handle]), ("canopy", main, [canopy])]


def _traffic_light(main: str) -> list[PartSpec]:
    housing = rect(0.4, 1.0)
    lamp = regular_polygon(32, radius=0.24)
    return [("housing", main, [housing]), ("red light", "red", [_shift(lamp, 0, -0.62)]),
            ("yellow light", "yellow", [lamp]), ("green light", "green", [_shift(lamp, 0, 0.62)])]


def _flower(main: str) -> list[PartSpec]:
    stem = _shift(rect(0.07, 0.5), 0, 0.5)
    petals = [_shift(regular_polygon(32, radius=0.25), 0.33 * math.cos(a), -0.35 + 0.33 * math.sin(a))
              for a in -math.pi / 2 + 2 * math.pi * np.arange(5) / 5]
    centre = _shift(regular_polygon(32, radius=0.2), 0, -0.35)
    return [("stem", "green", [stem]), ("petals", main, petals), ("centre", "yellow", [centre])]


def _boat(main: str) -> list[PartSpec]:
    hull = np.array([[-1, 0.45], [1, 0.45], [0.7, 0.9], [-0.7, 0.9]], dtype=float)
    mast = _shift(rect(0.06, 0.7), 0, -0.25)
    sail = np.array([[0.12, -0.9], [0.12, 0.35], [0.85, 0.35]], dtype=float)
    sail_colour = "orange" if main != "orange" else "yellow"
    return [("mast", "black", [mast]), ("sail", sail_colour, [sail]), ("hull", main, [hull])]


# thing -> (builder, colours its main part may take, name of the main part)
THINGS: dict[str, tuple[Callable[[str], list[PartSpec]], tuple[str, ...], str]] = {
    "house": (_house, ("red", "yellow", "blue", "orange", "pink"), "walls"),
    "tree": (_tree, ("green",), "crown"),
    "sun": (_sun, ("yellow", "orange"), "disk"),
    "car": (_car, ("red", "blue", "green", "yellow", "purple", "orange"), "body"),
    "umbrella": (_umbrella, ("red", "blue", "purple", "pink", "green", "orange"), "canopy"),
    "traffic light": (_traffic_light, ("black", "grey"), "housing"),
    "flower": (_flower, ("pink", "purple", "red", "blue"), "petals"),
    "boat": (_boat, ("brown", "red", "blue"), "hull"),
}
THING_KINDS: tuple[str, ...] = tuple(THINGS)
PART_NAMES: dict[str, tuple[str, ...]] = {
    thing: tuple(name for name, _, _ in builder("red")) for thing, (builder, _, _) in THINGS.items()
}
ALL_PART_NAMES: frozenset[str] = frozenset(part for parts in PART_NAMES.values() for part in parts)


def make_thing(kind: str, colour: str, size: str, cx: float, cy: float,
               radius: float) -> SceneObject:
    """A composite thing whose main part has ``colour``; the other parts have fixed colours."""
    builder = THINGS[kind][0]
    parts = []
    for name, part_colour, polys in builder(colour):
        parts.append(Part(name, part_colour, "solid", [place(p, cx, cy, radius) for p in polys]))
    return SceneObject(kind, colour, size, "solid", cx, cy, radius, parts)
