"""Shared fixtures for the interop tests: tiny released-layout checkpoints (see lisa.interop.fixtures)."""

from __future__ import annotations

import numpy as np

from lisa.interop.fixtures import TinyOfficial, official_tiny_size, write_tiny_official  # noqa: F401


def make_image(seed: int = 0, height: int = 48, width: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
