"""Broken model folders (real files: truncated weights, bad JSON, no tokenizer, another model's
weights) give one LisaError naming the file and what to do, in Python and on the command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lisa.errors import LisaError
from lisa.inference.pipeline import LisaPipeline

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "src" / "lisa" / "checkpoints" / "lisa-tiny"


def copy_model(source: Path, tmp_path: Path, name: str = "model") -> Path:
    folder = tmp_path / name
    shutil.copytree(source, folder)
    return folder


def load(folder: Path) -> str:
    with pytest.raises(LisaError) as error:
        LisaPipeline.from_pretrained(folder, device="cpu", dtype="float32")
    text = str(error.value)
    assert "\n" not in text
    return text


@pytest.mark.parametrize("keep", [4, 100, 20_000_000])  # inside the length, the header, the tensors
def test_truncated_weights(tmp_path: Path, keep: int) -> None:
    folder = copy_model(SHIPPED, tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:keep])
    text = load(folder)
    assert text.startswith(f"{weights} is damaged or incomplete") and "fetch the file again" in text


def test_weights_file_missing(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = copy_model(tiny_model_dir, tmp_path)
    (folder / "model.safetensors").unlink()
    assert "neither model.safetensors nor model.safetensors.index.json is present" in load(folder)


def test_damaged_shard_index(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = copy_model(tiny_model_dir, tmp_path)
    (folder / "model.safetensors.index.json").write_text("{not json")
    assert load(folder).startswith(f"{folder / 'model.safetensors.index.json'} is damaged")


@pytest.mark.parametrize("name", ["tokenizer.json", "preprocessor_config.json"])
def test_folder_without_tokenizer_or_processor(tmp_path: Path, tiny_model_dir: Path, name: str) -> None:
    folder = copy_model(tiny_model_dir, tmp_path)
    (folder / name).unlink()
    text = load(folder)
    assert text.startswith(f"{folder} has no") and name in text and "lisa export" in text


def test_unreadable_tokenizer(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = copy_model(tiny_model_dir, tmp_path)
    (folder / "tokenizer.json").write_text('{"version": "1.0", "model": 7}')
    assert load(folder).startswith(f"{folder}: its tokenizer files cannot be read")


def test_config_missing_a_key_or_malformed(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = copy_model(tiny_model_dir, tmp_path)
    path = folder / "lisa_config.json"
    data = json.loads(path.read_text())
    del data["num_image_tokens"]
    path.write_text(json.dumps(data))
    assert load(folder) == f"{path}: num_image_tokens is missing: give an integer >= 1"
    path.write_text(json.dumps(data)[:-5])
    assert load(folder).startswith(f"{path} is not valid JSON (line 1, column ")


def write_sam_folder(folder: Path) -> Path:
    from transformers import SamModel

    from lisa.model.build import SamSize, build_sam_config

    size = SamSize(hidden=16, layers=1, heads=2, image_size=64, patch=16, window=2, prompt_dim=16,
                   decoder_mlp=32, decoder_heads=2)
    SamModel(build_sam_config(size)).save_pretrained(folder)
    return folder


def test_sam_only_folder(tmp_path: Path) -> None:
    folder = write_sam_folder(tmp_path / "sam")
    text = load(folder)
    assert text.startswith(f"{folder} is a SAM model folder") and "lisa_config.json" in text


def test_another_models_weights(tmp_path: Path, tiny_model_dir: Path) -> None:
    sam = write_sam_folder(tmp_path / "sam")
    folder = copy_model(tiny_model_dir, tmp_path)
    shutil.copy(sam / "model.safetensors", folder / "model.safetensors")
    text = load(folder)
    assert text.startswith(f"{folder / 'model.safetensors'} does not hold this model's weights: missing ")


def test_weights_of_another_size(tmp_path: Path, tiny_model_dir: Path) -> None:
    """The config says one size, the weights are another: named, not a torch size-mismatch dump."""
    folder = copy_model(tiny_model_dir, tmp_path)
    path = folder / "lisa_config.json"
    data = json.loads(path.read_text())
    data["vlm"]["text_config"]["intermediate_size"] *= 2
    path.write_text(json.dumps(data))
    text = load(folder)
    assert text.startswith(f"{folder / 'model.safetensors'} holds weights of another model size: ")
    assert "mlp" in text and "in the file but" in text


def test_shipped_model_still_loads(tmp_path: Path) -> None:
    pipe = LisaPipeline.from_pretrained(SHIPPED, device="cpu", dtype="float32")
    from safetensors.torch import load_file

    saved = load_file(str(SHIPPED / "model.safetensors"))
    state = pipe.model.state_dict()
    assert all(state[k].equal(v) for k, v in saved.items())


def test_cli_truncated_weights(tmp_path: Path) -> None:
    folder = copy_model(SHIPPED, tmp_path)
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    run = subprocess.run([sys.executable, "-m", "lisa.cli", "segment", str(ROOT / "examples" / "umbrella.jpg"),
                          "what keeps you dry?", "--model", str(folder), "--out", str(tmp_path / "out"), "--device", "cpu"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 2 and "Traceback" not in run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {weights} is damaged or incomplete"), run.stderr
