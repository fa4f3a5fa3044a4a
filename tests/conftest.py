"""Shared fixtures: one tiny random-weight model per test session (a few MB, built offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lisa.model.build import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny-model"), seed=0)


@pytest.fixture(scope="session")
def tiny_pipeline(tiny_model_dir: Path):
    from lisa.inference.pipeline import LisaPipeline

    return LisaPipeline.from_pretrained(tiny_model_dir, device="cpu", dtype="float32")


@pytest.fixture()
def rng() -> np.random.Generator:
    torch.manual_seed(0)
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def model_with_read_and_batch(tmp_path_factory: pytest.TempPathFactory):
    """``_training.model_and_training_batch`` with a seg head that reads the image tokens; one
    per test module (tests may change the model)."""
    from _training import model_and_training_batch

    from lisa.train.model_setup import rebuild_seg_head

    model, batch = model_and_training_batch(tmp_path_factory)
    rebuild_seg_head(model, "none", image_attention=True)
    return model, batch
