"""`lisa chat` driven as a real subprocess through stdin: trimming, /reset, /image, /save."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def _chat(model: Path, image: Path, out: Path, lines: list[str], *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lisa.cli", "chat", str(image), "--model", str(model), "--out", str(out),
         "--device", "cpu", "--threads", "1", *extra],
        input="".join(line + "\n" for line in lines), capture_output=True, text=True, env=env, timeout=300,
    )


def _image(path: Path, value: int) -> Path:
    Image.fromarray(np.full((24, 32, 3), value, np.uint8)).save(path)
    return path


@pytest.mark.slow  # a chat session in a subprocess
@pytest.mark.slow  # a fresh interpreter driven through stdin
def test_long_chat_drops_the_oldest_turns_and_says_so_once(tiny_model_dir, tmp_path) -> None:
    # each turn is over 100 prompt tokens plus an answer of up to 16; the tiny model accepts 512
    long_query = "tell me about the " + " ".join(f"object{i}" for i in range(50))
    done = _chat(tiny_model_dir, _image(tmp_path / "a.png", 90), tmp_path / "out", [long_query] * 7,
                 "--max-new-tokens", "16")
    assert done.returncode == 0, done.stderr
    assert "error" not in done.stdout, done.stdout
    assert done.stdout.count("dropping the oldest turns") == 1
    assert done.stdout.count("lisa> ") == 7
    assert all((tmp_path / "out" / f"turn_{i}" / "result.json").is_file() for i in range(7))


@pytest.mark.slow  # a chat session in a subprocess
@pytest.mark.slow  # a fresh interpreter driven through stdin
def test_reset_image_and_save_commands(tiny_model_dir, tmp_path) -> None:
    first, second = _image(tmp_path / "a.png", 40), _image(tmp_path / "b.png", 200)
    saved = tmp_path / "saved"
    done = _chat(tiny_model_dir, first, tmp_path / "out",
                 ["what is it?", "/reset", "and this?", f"/image {second}", "and now?", "/image missing.png",
                  "/bogus", f"/save {saved}"], "--max-new-tokens", "6")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "Please output segmentation mask" in out  # the greeting says how to ask for a mask
    assert "conversation reset" in out and f"now talking about {second}" in out
    assert "error:" in out and "unknown command /bogus" in out  # a missing image is reported, chat goes on
    transcript = json.loads((saved / "transcript.json").read_text())
    assert [t["query"] for t in transcript] == ["what is it?", "and this?", "and now?"]
    assert [t["image"] for t in transcript] == [str(first), str(first), str(second)]
    for index, turn in enumerate(transcript):
        assert (saved / f"turn_{index}" / "result.json").is_file()
        assert all((saved / mask).is_file() for mask in turn["masks"])
    assert "you> what is it?" in (saved / "transcript.txt").read_text()
    # the third turn ran on the second image, with no history from the first
    result = json.loads((tmp_path / "out" / "turn_2" / "result.json").read_text())
    assert result["image_size"] == [24, 32] and result["query"] == "and now?"


def test_a_saved_transcript_keeps_the_presence_verdicts(tmp_path) -> None:
    """/save writes each turn again elsewhere: a presence head's `present` must survive the copy."""
    from lisa.inference.chat import ChatSession, Turn

    image = _image(tmp_path / "a.png", 90)
    session = ChatSession(pipe=None, image_path=image, out=tmp_path / "out", say=lambda _: None)
    masks = np.zeros((2, 24, 32), dtype=bool)
    masks[0, 2:5, 3:7] = True
    session.transcript.append(Turn(image, "the red circle", "[SEG] [SEG]", masks, np.array([0.8, 0.0]),
                                   tmp_path / "out" / "turn_0", np.array([True, False])))
    session._save(tmp_path / "saved")
    result = json.loads((tmp_path / "saved" / "turn_0" / "result.json").read_text())
    assert [m["present"] for m in result["masks"]] == [True, False]
    assert [m["area"] for m in result["masks"]] == [12, 0]
