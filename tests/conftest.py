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


def model_and_training_batch(tmp_path_factory: pytest.TempPathFactory):
    """A fresh tiny LisaModel (seed 0) and a collated training batch of two samples of a small
    synthetic world (for tests of the training losses)."""
    import random

    from lisa.data.collate import Collator
    from lisa.data.jsonl import JsonlTrain
    from lisa.model.build import ModelSize, build_model
    from lisa.model.prompting import PromptBuilder
    from lisa.train.synthetic import write_synthetic

    data = write_synthetic(tmp_path_factory.mktemp("shapes"), images=4, size=48, val_images=0)
    torch.manual_seed(0)
    model, tokenizer, processor = build_model(ModelSize())
    loader = JsonlTrain(data, "train", max_queries=2)
    samples = [loader.sample(i, random.Random(i)) for i in range(2)]
    batch = Collator(PromptBuilder(tokenizer, model.config), processor, model.config.sam_image_size)(samples)
    return model, batch
