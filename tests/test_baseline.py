"""The text-prompt SAM baseline (no LLM): learns, resumes exactly, predicts, is scored by `lisa baseline eval`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from safetensors.torch import load_file

from lisa.baselines.text_encoder import TextEncoderSize
from lisa.baselines.text_sam import TextPromptSegmenter, baseline_predictor
from lisa.baselines.train import BaselineConfig, train_baseline
from lisa.cli import main
from lisa.data.jsonl import JsonlEval
from lisa.model.build import SamSize, build_sam_config
from lisa.train.sam_pretrain import fresh_sam

SMALL_SAM = SamSize(hidden=32, layers=2, heads=2, image_size=64, patch=16, window=2, prompt_dim=32,
                    decoder_mlp=64, decoder_heads=2)
SMALL_TEXT = TextEncoderSize(vocab_size=400, hidden=32, layers=1, heads=2, intermediate=64, max_length=24)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _rle(mask: np.ndarray) -> dict:
    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"rle": {"size": list(mask.shape), "counts": encoded["counts"].decode()}}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 48x40 images, each with a bright square and a dark bar; "square" / "bar" queries."""
    root = tmp_path_factory.mktemp("world")
    rng = np.random.default_rng(0)
    semantic, referring = [], []
    for index in range(4):
        image = np.full((48, 40, 3), 120, np.uint8)
        square, bar = np.zeros((48, 40), bool), np.zeros((48, 40), bool)
        y, x = rng.integers(2, 14, 2)
        square[y:y + 16, x:x + 16] = True
        bar[40:46, 2:38] = True
        image[square], image[bar] = 250, 10
        Image.fromarray(image).save(root / f"{index}.png")
        semantic += [{"image": f"{index}.png", "query": "square", "targets": [_rle(square)]},
                     {"image": f"{index}.png", "query": "bar", "targets": [_rle(bar)]}]
        referring.append({"image": f"{index}.png", "query": "the bright square", "targets": [_rle(square)]})
    for name, records in (("semantic", semantic), ("referring", referring)):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "vqa.jsonl").write_text(json.dumps({"image": "0.png", "query": "how many?", "answer": "2"}) + "\n")
    return root


@pytest.fixture(scope="module")
def sam_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("sam")
    torch.manual_seed(0)
    fresh_sam(build_sam_config(SMALL_SAM)).save_pretrained(folder)
    return folder


def _config(run_dir: Path, world: Path, sam_dir: Path, steps: int) -> BaselineConfig:
    return BaselineConfig(run_dir=str(run_dir), data_dir=str(world), sam=str(sam_dir), text=SMALL_TEXT, lr=3e-3,
                          warmup_steps=2, max_steps=steps, batch_size=6, save_every=2, keep_last=2, log_every=1)


@pytest.fixture(scope="module")
def trained(world: Path, sam_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("run")
    train_baseline(_config(run, world, sam_dir, 30))
    return run


def test_loss_falls(trained: Path) -> None:
    losses = [json.loads(line)["loss"] for line in (trained / "log.jsonl").read_text().splitlines()]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    assert (trained / "model" / "sam" / "config.json").is_file()
    assert len(list((trained / "cache").glob("image-embeddings-*.safetensors"))) == 1


def test_only_the_mask_decoder_of_sam_changes(trained: Path, sam_dir: Path) -> None:
    before = load_file(str(sam_dir / "model.safetensors"))
    after = load_file(str(trained / "model" / "sam" / "model.safetensors"))
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("mask_decoder.") for k in changed)


def test_resume_equals_uninterrupted(world: Path, sam_dir: Path, tmp_path: Path) -> None:
    straight = train_baseline(_config(tmp_path / "a", world, sam_dir, 4))
    train_baseline(_config(tmp_path / "b", world, sam_dir, 2))
    with pytest.raises(Exception, match="--resume"):
        train_baseline(_config(tmp_path / "b", world, sam_dir, 4))
    resumed = train_baseline(_config(tmp_path / "b", world, sam_dir, 4), resume=True)
    for name in ("text_encoder.safetensors", "sam/model.safetensors"):
        a, b = load_file(str(straight / name)), load_file(str(resumed / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_predictor_returns_image_sized_masks(trained: Path, world: Path) -> None:
    items = JsonlEval(world)
    predict = baseline_predictor(trained / "model")
    predictions = predict([items[i] for i in range(3)])
    assert len(predictions) == 3
    for mask, text in predictions:
        assert mask.shape == (48, 40) and mask.dtype == bool and text is None
    model = TextPromptSegmenter.from_pretrained(trained / "model")
    assert model.query_text == "template"


def test_eval_command_writes_a_report(trained: Path, world: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "report.json"
    code = main(["baseline", "eval", "--model", str(trained / "model"), "--dataset", "jsonl", "--data-dir",
                 str(world), "--split", "test", "--names", "referring", "--out", str(out), "--no-progress"])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["n"] == 4 and report["info"]["mode"] == "baseline_text_sam"
    assert f"n={report['n']}" in capsys.readouterr().out


def test_eval_of_a_wrong_folder_says_what_to_do(tmp_path: Path, world: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["baseline", "eval", "--model", str(tmp_path), "--dataset", "jsonl", "--data-dir", str(world),
                 "--no-progress"])
    assert code == 2 and "lisa baseline train" in capsys.readouterr().err


def test_threads_option_overrides_the_configs_threads(world: Path, sam_dir: Path, tmp_path: Path) -> None:
    """`lisa baseline train --threads 1` on a config that says `threads: 2` trains with 1 and records 1."""
    config = tmp_path / "baseline.yaml"
    config.write_text(
        f"run_dir: {tmp_path / 'run'}\ndata_dir: {world}\nsam: {sam_dir}\nmax_steps: 1\nbatch_size: 2\nthreads: 2\n"
        "text: {vocab_size: 400, hidden: 32, layers: 1, heads: 2, intermediate: 64, max_length: 24}\n")
    assert main(["baseline", "train", "--config", str(config), "--threads", "1"]) == 0
    assert torch.get_num_threads() == 1
    assert json.loads((tmp_path / "run" / "config.json").read_text())["threads"] == 1


def test_eval_threads_option_sets_torchs_threads_and_refuses_zero(trained: Path, world: Path, tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    """`lisa baseline eval --threads` is `lisa eval`'s option: N sets torch's threads, 0 is refused."""
    args = ["baseline", "eval", "--model", str(trained / "model"), "--dataset", "jsonl", "--data-dir", str(world),
            "--split", "test", "--names", "referring", "--no-progress"]
    torch.set_num_threads(1)
    try:
        assert main(args + ["--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    with pytest.raises(SystemExit):
        main(args + ["--threads", "0"])
    assert "threads must be at least 1" in capsys.readouterr().err
