"""The hostile-input matrix: every command, real files, a real `lisa` subprocess each.

Each case asserts the CLI contract: exit 2, exactly one ``error:`` line naming the culprit, no
traceback, and nothing lost (a refused output folder keeps its files). `lisa data check` is the
exception by design: problems in the data are its report (one ``file:line: error:`` per problem,
exit 1). The table in docs/limits.md lists the same cases.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image
from test_cli_errors import assert_one_error_line, run_lisa

pytestmark = pytest.mark.slow  # ~40 fresh interpreters, several importing torch
READ_ONLY = Path("/sys/lisa-out")  # sysfs refuses new folders even to root; chmod does not stop root


def _image(path: Path, size: tuple[int, int] = (24, 16)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), 90, np.uint8)).save(path)
    return path


def _truncated(path: Path) -> Path:
    _image(path, (64, 64))
    path.write_bytes(path.read_bytes()[:60])
    return path


def _bomb(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("1", (20_000, 10_000)).save(path)  # 200 M pixels in a few kB
    return path


def _text(path: Path, content: str = "not an image") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


def _full_folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "keep.txt").write_text("precious")
    return path


def _jsonl(root: Path, targets: list) -> Path:
    _image(root / "img.png")
    (root / "q.jsonl").write_text(json.dumps({"image": "img.png", "query": "q", "targets": targets}) + "\n")
    return root


def _pred_dir(t: Path, content: Callable[[Path], Path]) -> list[str]:
    root = _jsonl(t / "d", [{"polygons": [[0, 0, 5, 0, 5, 5]]}])
    content(t / "p" / "q%3A1.png")
    return ["eval", "--dataset", "jsonl", "--data-dir", str(root), "--pred-dir", str(t / "p"), "--no-progress"]


def _seg(t: Path, *extra: str, image: Path | None = None, query: str = "the thing") -> list[str]:
    return ["segment", str(image or _image(t / "in.png")), query, "--model", str(t / "no-model"),
            "--device", "cpu", *extra]


# (case id, argv builder, fragments of the error line); every case: exit 2, one line, no traceback
CASES: list[tuple[str, Callable[[Path], list[str]], tuple[str, ...]]] = [
    ("segment: image missing", lambda t: _seg(t, image=t / "nope.png"), ("nope.png", "not found")),
    ("segment: image is text", lambda t: _seg(t, image=_text(t / "fake.png")), ("fake.png", "cannot read image")),
    ("segment: truncated png", lambda t: _seg(t, image=_truncated(t / "cut.png")), ("cut.png",)),
    ("segment: decompression bomb", lambda t: _seg(t, image=_bomb(t / "bomb.png")), ("bomb.png", "too large")),
    ("segment: empty query", lambda t: _seg(t, query="   "), ("query is empty",)),
    ("segment: --max-new-tokens 0", lambda t: _seg(t, "--max-new-tokens", "0"), ("--max-new-tokens must be at least 1",)),
    ("segment: --out is a file", lambda t: _seg(t, "--out", str(_text(t / "out.txt"))), ("out.txt", "existing file")),
    ("segment: --out read-only", lambda t: _seg(t, "--out", str(READ_ONLY)), ("cannot write into /sys",)),
    ("segment: --out below a file", lambda t: _seg(t, "--out", str(_text(t / "f") / "sub")), ("is a file",)),
    ("segment: --out not empty", lambda t: _seg(t, "--out", str(_full_folder(t / "o"))), ("already holds files", "--overwrite")),
    ("segment: model missing", lambda t: _seg(t, "--out", str(t / "o")), ("no-model",)),
    ("segment: unknown flag", lambda t: _seg(t, "--colour", "red"), ("unrecognized arguments: --colour",)),
    ("chat: image missing", lambda t: ["chat", str(t / "nope.png"), "--out", str(t / "c")], ("nope.png", "not found")),
    ("chat: --out not empty", lambda t: ["chat", str(_image(t / "i.png")), "--out", str(_full_folder(t / "c"))],
     ("already holds files",)),
    ("eval: data folder missing", lambda t: ["eval", "--dataset", "jsonl", "--data-dir", str(t / "none"),
                                             "--pred-dir", str(t)], ("none", "does not exist")),
    ("eval: pred-dir missing", lambda t: ["eval", "--dataset", "jsonl", "--data-dir", str(_jsonl(t / "d", [])),
                                          "--pred-dir", str(t / "none")], ("prediction folder", "does not exist")),
    ("eval: prediction is text", lambda t: _pred_dir(t, _text), ("q%3A1.png", "not a readable image")),
    ("eval: prediction is a bomb", lambda t: _pred_dir(t, _bomb), ("q%3A1.png", "limit")),
    ("eval: prediction wrong size", lambda t: _pred_dir(t, lambda p: _image(p, (5, 5))), ("is 5x5 but the image is 24x16",)),
    ("eval: NaN polygon", lambda t: ["eval", "--dataset", "jsonl", "--pred-dir", str(t), "--data-dir",
                                     str(_jsonl(t / "d", [{"polygons": [[0, 0, float("nan"), 0, 5, 5]]}]))],
     ("q.jsonl:1", "NaN")),
    ("eval: 1e30 polygon", lambda t: _pred_dir(t, _image)[:-1] + ["--data-dir", str(_jsonl(
        t / "d2", [{"polygons": [[0, 0, 1e30, 0, 5, 5]]}]))], ("q.jsonl:1", "far outside")),
    ("eval: RLE counts short", lambda t: ["eval", "--dataset", "jsonl", "--pred-dir", str(t), "--data-dir",
                                          str(_jsonl(t / "d", [{"rle": {"size": [16, 24], "counts": [100, 3]}}]))],
     ("q.jsonl:1", "sum to 103")),
    ("eval: compressed RLE garbage", lambda t: ["eval", "--dataset", "jsonl", "--pred-dir", str(t), "--data-dir",
                                                str(_jsonl(t / "d", [{"rle": {"size": [16, 24], "counts": "\x7f!"}}]))],
     ("q.jsonl:1", "invalid character")),
    ("eval: image path ../", lambda t: ["eval", "--dataset", "jsonl", "--pred-dir", str(t), "--data-dir",
                                        str(_text(t / "d" / "q.jsonl", json.dumps({"image": "../x.png", "query": "q"})).parent)],
     ("q.jsonl:1", "outside the data folder")),
    ("eval: --out is a folder", lambda t: _pred_dir(t, _image) + ["--out", str(_full_folder(t / "r"))], ("is a folder",)),
    ("eval: --visualize not empty", lambda t: _pred_dir(t, _image) + ["--visualize", str(_full_folder(t / "v"))],
     ("--visualize", "already holds files")),
    ("eval: --batch-size 0", lambda t: _pred_dir(t, _image) + ["--batch-size", "0"], ("--batch-size must be at least 1",)),
    ("eval: --save-predictions without a model", lambda t: _pred_dir(t, _image) + ["--save-predictions", str(t / "s")],
     ("--save-predictions needs --model",)),
    ("data check: folder missing", lambda t: ["data", "check", str(t / "none")], ("none", "does not exist")),
    ("train: config missing", lambda t: ["train", "--config", str(t / "none.yaml")], ("none.yaml",)),
    ("export: run missing", lambda t: ["export", "--run", str(t / "norun"), "--out", str(t / "m")], ("norun",)),
    ("export: --out is a file", lambda t: ["export", "--run", str(t), "--out", str(_text(t / "m.txt"))], ("m.txt", "existing file")),
    ("convert sam: --src is text", lambda t: ["convert", "sam", "--src", str(_text(t / "sam.pth")), "--out", str(t / "o")],
     ("sam.pth",)),
    ("convert official: --src missing", lambda t: ["convert", "official", "--src", str(t / "none"), "--vision-tower",
                                                   str(t / "clip"), "--out", str(t / "o")], ("none",)),
    ("init: --vlm missing", lambda t: ["init", "--vlm", str(t / "novlm"), "--sam", str(t / "nosam"), "--out", str(t / "o")],
     ("novlm",)),
    ("tiny-model: --out not empty", lambda t: ["tiny-model", "--out", str(_full_folder(t / "m"))], ("already holds files",)),
    ("shapes generate: --out is a file", lambda t: ["shapes", "generate", "--out", str(_text(t / "s")), "--split", "val"],
     ("is a file",)),
    ("shapes generate: split exists", lambda t: ["shapes", "generate", "--out", str(_full_folder(t / "s" / "val").parent),
                                                 "--split", "val", "--n", "1"], ("already holds files",)),
]


@pytest.mark.parametrize(("builder", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_error_line_and_loses_nothing(tmp_path: Path, builder, fragments) -> None:
    argv = builder(tmp_path)
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file() and p.stat().st_size < 1_000_000}
    assert_one_error_line(run_lisa(*argv, cwd=tmp_path), *fragments)
    for path, content in before.items():  # nothing lost: every file that was there is still there, unchanged
        assert path.is_file() and path.read_bytes() == content, path


def test_data_check_reports_every_hostile_record(tmp_path: Path) -> None:
    root = tmp_path / "d"
    _image(root / "img.png")
    _text(root / "notimage.png")
    _bomb(root / "bomb.png")
    records = [
        {"image": "img.png", "query": "nan", "targets": [{"polygons": [[0, 0, float("nan"), 0, 5, 5]]}]},
        {"image": "img.png", "query": "1e30", "targets": [{"polygons": [[0, 0, 1e30, 0, 5, 5]]}]},
        {"image": "img.png", "query": "text mask", "targets": [{"mask": "notimage.png"}]},
        {"image": "bomb.png", "query": "bomb image"},
        {"image": "/etc/passwd", "query": "absolute"},
        {"image": "../../x.png", "query": "escape"},
        {"image": "img.png", "query": "rle", "targets": [{"rle": {"size": [16, 24], "counts": [1, 2, 3]}}]},
        {"image": "img.png", "query": "", "targets": []},
    ]
    (root / "q.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n{broken\n")
    result = run_lisa("data", "check", str(root))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stdout.splitlines() if ": error: " in line]
    assert [int(line.split(":")[1]) for line in errors] == list(range(1, 10)), result.stdout
    assert result.stdout.strip().splitlines()[-1].endswith("9 error(s), 0 warning(s)")
    ok = run_lisa("data", "check", str(root), "--allow-outside-paths")
    assert "absolute path" not in ok.stdout and "outside the data folder" not in ok.stdout


def test_segment_overwrite_replaces_the_folder_whole(tmp_path: Path, tiny_model_dir: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    for k in range(4):  # an earlier run's files
        _image(out / f"mask_{k}.png")
    (out / "result.json").write_text("{}")
    argv = ["segment", str(_image(tmp_path / "in.png")), "find it", "--model", str(tiny_model_dir), "--device", "cpu",
            "--max-new-tokens", "4", "--out", str(out)]
    assert_one_error_line(run_lisa(*argv), "already holds files")
    assert len(list(out.glob("mask_*.png"))) == 4  # refused: untouched
    result = run_lisa(*argv, "--overwrite")
    assert result.returncode == 0, result.stderr
    written = json.loads((out / "result.json").read_text())
    assert len(list(out.glob("mask_*.png"))) == len(written["masks"])  # no stale mask beside the result
    assert not list(tmp_path.glob(".lisa-partial-*"))  # no staging folder left behind
