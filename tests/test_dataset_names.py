"""One registry of evaluation dataset names: the CLI, the training config and the loader agree."""

from __future__ import annotations

import argparse

import pytest

from lisa.data.names import EVAL_DATASETS, REFER_DATASETS
from lisa.errors import LisaError
from lisa.eval import commands
from lisa.eval.evaluate import load_eval_dataset


def test_eval_command_offers_exactly_the_registry() -> None:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    eval_parser = parser._subparsers._group_actions[0].choices["eval"]
    dataset = next(a for a in eval_parser._actions if a.dest == "dataset")
    assert tuple(dataset.choices) == EVAL_DATASETS
    assert set(REFER_DATASETS) < set(EVAL_DATASETS)


def test_loader_knows_every_registered_name(tmp_path) -> None:
    for name in EVAL_DATASETS:  # each reaches its own loader, which then finds no files
        with pytest.raises(LisaError) as error:
            load_eval_dataset(name, tmp_path, "val")
        assert "unknown evaluation dataset" not in str(error.value)
    with pytest.raises(LisaError, match="unknown evaluation dataset 'coco'"):
        load_eval_dataset("coco", tmp_path, "val")
