"""`lisa fixtures official`: the commands docs/released-weights.md shows run on its output, as written."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
from PIL import Image

from lisa.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _documented_commands() -> list[list[str]]:
    text = (ROOT / "docs" / "released-weights.md").read_text()
    section = text.split("## Try it without the weights", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.DOTALL).group(1)
    return [shlex.split(line) for line in block.splitlines() if line.strip()]


def test_documented_fixture_commands_run(tmp_path, monkeypatch) -> None:
    commands = _documented_commands()
    assert commands[0][:3] == ["lisa", "fixtures", "official"] and len(commands) >= 6
    monkeypatch.chdir(tmp_path)
    for argv in commands:
        assert argv[0] == "lisa"
        argv = [str(ROOT / a) if a.startswith("examples/") else a for a in argv[1:]]
        if argv[0] in ("segment", "chat"):
            argv += ["--device", "cpu", "--threads", "1", "--max-new-tokens", "8"]
        assert main(argv) == 0, argv
    fixtures = tmp_path / "fixtures"
    for name in ("LISA-tiny-v1", "clip-vit-tiny", "llava-1.5-tiny-hf", "LLaVA-tiny-v1", "converted", "my-lisa", "my-lisa-v1"):
        assert (fixtures / name).is_dir(), name
    # converting once or loading the released folder directly: the same answer and masks
    converted = json.loads((fixtures / "out-converted" / "result.json").read_text())
    direct = json.loads((fixtures / "out-direct" / "result.json").read_text())
    assert converted["text"] == direct["text"] and converted["masks"] == direct["masks"]
    for mask in (fixtures / "out-direct").glob("mask_*.png"):
        assert np.array_equal(np.asarray(Image.open(mask)), np.asarray(Image.open(fixtures / "out-converted" / mask.name)))


def test_fixtures_refuse_a_folder_in_use(tmp_path, capsys) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    assert main(["fixtures", "official", "--out", str(tmp_path)]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "mine"
