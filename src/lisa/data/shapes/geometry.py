"""Unit-size outlines of the simple shape kinds, as float vertex arrays.

Every outline is centred on (0, 0) and fits in the square [-1, 1]^2 (y points down, as in
images). Circles are many-vertex polygons so that one rasteriser (OpenCV ``fillPoly``)
draws every shape and masks are exact by construction.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

CIRCLE_VERTICES = 64  # enough that a 40-px circle looks round


def regular_polygon(n: int, start: float = -math.pi / 2, radius: float = 1.0) -> np.ndarray:
    """[n, 2] vertices of a regular n-gon; the first vertex at angle ``start``."""
    angles = start + 2 * math.pi * np.arange(n) / n
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def ellipse(rx: float, ry: float, n: int = CIRCLE_VERTICES) -> np.ndarray:
    ring = regular_polygon(n)
    return ring * np.array([rx, ry])


def star(points: int = 5, inner: float = 0.45) -> np.ndarray:
    outer = regular_polygon(points)
    inner_ring = regular_polygon(points, start=-math.pi / 2 + math.pi / points, radius=inner)
    return np.stack([outer, inner_ring], axis=1).reshape(-1, 2)  # alternate outer/inner


def heart(n: int = CIRCLE_VERTICES) -> np.ndarray:
    t = np.linspace(0, 2 * math.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    pts = np.stack([x, y], axis=1)
    pts -= (pts.max(0) + pts.min(0)) / 2  # centre the bounding box
    return pts / np.abs(pts).max()


def cross(arm: float = 0.32) -> np.ndarray:
    a = arm
    return np.array(
        [[-a, -1], [a, -1], [a, -a], [1, -a], [1, a], [a, a], [a, 1], [-a, 1], [-a, a], [-1, a],
         [-1, -a], [-a, -a]], dtype=float)


def crescent(n: int = 40, shift: float = 0.45) -> np.ndarray:
    """Outer arc of the unit circle, then back along an arc of a circle shifted right.

    Both arcs share their end points, so the outline is one simple polygon without a hole.
    """
    outer = np.radians(np.linspace(40, 320, n))
    outer_pts = np.stack([np.cos(outer), np.sin(outer)], axis=1)
    end_x, end_y = outer_pts[0]
    radius = math.hypot(end_x - shift, end_y)
    half = math.degrees(math.atan2(end_y, end_x - shift))  # angle of the top end seen from the shift
    inner = np.radians(np.linspace(360 - half, half, n))[1:-1]  # bottom end -> left -> top end
    inner_pts = np.stack([shift + radius * np.cos(inner), radius * np.sin(inner)], axis=1)
    pts = np.concatenate([outer_pts, inner_pts])
    pts[:, 0] -= (pts[:, 0].max() + pts[:, 0].min()) / 2
    return pts


def arrow() -> np.ndarray:
    return np.array(
        [[-1, -0.25], [0.2, -0.25], [0.2, -0.65], [1, 0], [0.2, 0.65], [0.2, 0.25], [-1, 0.25]],
        dtype=float)


def rect(w: float, h: float) -> np.ndarray:
    return np.array([[-w, -h], [w, -h], [w, h], [-w, h]], dtype=float)


SHAPE_OUTLINES: dict[str, Callable[[], np.ndarray]] = {
    "circle": lambda: regular_polygon(CIRCLE_VERTICES),
    "oval": lambda: ellipse(1.0, 0.6),
    "triangle": lambda: regular_polygon(3, radius=1.0) + np.array([0, 0.2]),
    "square": lambda: rect(0.78, 0.78),
    "rectangle": lambda: rect(1.0, 0.5),
    "diamond": lambda: np.array([[0, -1], [0.62, 0], [0, 1], [-0.62, 0]], dtype=float),
    "pentagon": lambda: regular_polygon(5) + np.array([0, 0.1]),
    "hexagon": lambda: regular_polygon(6, start=0.0),
    "octagon": lambda: regular_polygon(8, start=math.pi / 8),
    "star": star,
    "heart": heart,
    "cross": cross,
    "crescent": crescent,
    "arrow": arrow,
}

# Number of straight sides, for the polygon kinds only (used by counting and reasoning queries).
SIDES: dict[str, int] = {
    "triangle": 3, "square": 4, "rectangle": 4, "diamond": 4, "pentagon": 5, "hexagon": 6,
    "octagon": 8,
}

SHAPE_KINDS: tuple[str, ...] = tuple(SHAPE_OUTLINES)


def place(unit: np.ndarray, cx: float, cy: float, scale: float) -> np.ndarray:
    """Map a unit outline to image coordinates: [N, 2] float (x, y)."""
    return unit * scale + np.array([cx, cy])
