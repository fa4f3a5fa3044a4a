"""Per-cell labels of a scene (lisa.data.shapes.cells) on hand-built scenes with known cells."""

from __future__ import annotations

import numpy as np
import pytest

from lisa.data.shapes.cells import COLOUR_NAMES, KINDS, cell_labels
from lisa.data.shapes.objects import make_shape
from lisa.data.shapes.scene import render

SIZE = 256
BG = np.full((SIZE, SIZE, 3), 235, dtype=np.uint8)


def test_a_square_labels_exactly_the_cells_it_covers() -> None:
    # The square drawn at (80, 80) with radius 40 spans pixels 49..111 on both axes. On the 8x8
    # grid (32-px cells) it covers cell (2, 2) whole, half of its four neighbours (0.47-0.50) and
    # under a quarter of the diagonal ones (0.22-0.25 < 1/3): a plus of five cells.
    scene = render([make_shape("square", "blue", "large", "solid", 80, 80, 40)], SIZE, BG)
    kind, colour = cell_labels(scene, 8)
    expected = np.zeros((8, 8), dtype=bool)
    expected[2, 1:4] = expected[1:4, 2] = True
    assert np.array_equal(kind.reshape(8, 8) == KINDS.index("square"), expected)
    assert np.array_equal(colour.reshape(8, 8) == COLOUR_NAMES.index("blue"), expected)
    assert (kind.reshape(8, 8)[~expected] == 0).all() and (colour.reshape(8, 8)[~expected] == 0).all()


def test_the_object_covering_more_of_a_cell_wins_it() -> None:
    # Two squares share cell (row 2, column 2) = x, y 64..96: the red one (x 48..80) covers half
    # of it, the green one (x 88..120, drawn later) under a quarter -> red; column 3 is green's.
    red = make_shape("square", "red", "medium", "solid", 64, 80, 20)
    green = make_shape("square", "green", "medium", "solid", 104, 80, 20)
    kind, colour = cell_labels(render([red, green], SIZE, BG), 8)
    grid = colour.reshape(8, 8)
    assert grid[2, 2] == COLOUR_NAMES.index("red") and grid[2, 3] == COLOUR_NAMES.index("green")
    assert set(kind[colour > 0]) == {KINDS.index("square")}


def test_refuses_a_grid_that_does_not_divide_the_scene() -> None:
    scene = render([make_shape("circle", "red", "small", "solid", 50, 50, 15)], SIZE, BG)
    with pytest.raises(ValueError, match="divides into 7 cells"):
        cell_labels(scene, 7)
