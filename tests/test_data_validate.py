"""One validation of polygons, RLE and mask files (lisa.data.validate), as the loaders, eval and
`lisa data check` see it: hostile geometry is refused before it reaches OpenCV / pycocotools."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _data_writers import write_image, write_jsonl
from PIL import Image
from pycocotools import mask as coco_mask

from lisa.data.check import check_folder
from lisa.data.jsonl import JsonlEval
from lisa.data.polygons import coco_polygons_mask, coco_rle_mask, reasonseg_mask
from lisa.data.validate import (
    RecordError, check_coco_polygons, check_rle, compressed_rle_counts, inside_path, read_mask_file,
)
from lisa.errors import LisaError


def _rle(mask: np.ndarray) -> dict:
    encoded = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in encoded["size"]], "counts": encoded["counts"].decode()}


@pytest.mark.parametrize("values", [[0, 0, 5, float("nan"), 5, 5], [0, 0, 1e30, 0, 5, 5], [0, 0, 5, float("inf"), 3, 3]])
def test_hostile_coordinates_are_refused_before_rasterising(values) -> None:
    with pytest.raises(RecordError, match="NaN or infinite|far outside"):
        coco_polygons_mask([values], 10, 10)
    with pytest.raises(RecordError, match="NaN or infinite|far outside"):
        reasonseg_mask([{"label": "x", "points": [values[i:i + 2] for i in range(0, 6, 2)]}], 10, 10)


def test_polygon_structure() -> None:
    with pytest.raises(RecordError, match="at least 3 points"):
        check_coco_polygons([[0, 0, 1, 1]])
    with pytest.raises(RecordError, match="even count"):
        check_coco_polygons([[0, 0, 1, 1, 2]])
    with pytest.raises(RecordError, match="numbers only"):
        check_coco_polygons([[0, 0, 1, True, 2, 2]])
    with pytest.raises(RecordError, match="far outside"):
        check_coco_polygons([[0, 0, 31, 0, 0, 5]], 10, 10)  # x beyond 2 * width
    check_coco_polygons([[-10, -10, 20, 0, 0, 20]], 10, 10)  # slightly outside: fine, clipped


def test_rle_counts_must_sum_to_the_size() -> None:
    mask = np.zeros((6, 7), bool)
    mask[1:4, 2:6] = True
    good = _rle(mask)
    assert np.array_equal(coco_rle_mask(good, 6, 7).astype(bool), mask)
    runs = compressed_rle_counts(good["counts"])
    assert sum(runs) == 42
    short = {"size": [6, 7], "counts": runs[:-1]}
    with pytest.raises(RecordError, match="sum to"):
        coco_rle_mask(short, 6, 7)
    long = {"size": [6, 7], "counts": runs[:-1] + [runs[-1] + 5]}
    with pytest.raises(RecordError, match="sum to 47"):
        coco_rle_mask(long, 6, 7)
    compressed_short = _rle(mask[:5])  # the RLE of a 5x7 mask claimed as 6x7
    with pytest.raises(RecordError, match="sum to 35 pixels but size 6x7 needs 42"):
        coco_rle_mask({"size": [6, 7], "counts": compressed_short["counts"]}, 6, 7)
    with pytest.raises(RecordError, match="negative"):
        check_rle({"size": [2, 2], "counts": [5, -1]})
    with pytest.raises(RecordError, match="invalid character"):
        check_rle({"size": [2, 2], "counts": "4\x00"})
    with pytest.raises(RecordError, match="truncated"):
        check_rle({"size": [2, 2], "counts": "o"})  # 'o' = 63: a continuation bit and no next byte
    with pytest.raises(RecordError, match="positive"):
        check_rle({"size": [0, 7], "counts": []})
    with pytest.raises(RecordError, match="above the limit"):
        check_rle({"size": [100_000, 100_000], "counts": [10_000_000_000]})
    with pytest.raises(RecordError, match="differs from the image size"):
        coco_rle_mask(good, 7, 6)


def test_paths_stay_inside_the_data_folder(tmp_path: Path) -> None:
    assert inside_path(tmp_path, "a/b.png", tmp_path, False, "image") == tmp_path / "a/b.png"
    assert inside_path(tmp_path, "a/../b.png", tmp_path, False, "image") == tmp_path / "a/../b.png"
    with pytest.raises(RecordError, match="absolute path"):
        inside_path(tmp_path, "/etc/passwd", tmp_path, False, "image")
    with pytest.raises(RecordError, match="outside the data folder"):
        inside_path(tmp_path, "../x.png", tmp_path, False, "image")
    assert inside_path(tmp_path, "../x.png", tmp_path, True, "image") == tmp_path / "../x.png"


def test_mask_files_alpha_rule_and_bombs(tmp_path: Path) -> None:
    fg = np.zeros((4, 5), bool)
    fg[1:3, 1:4] = True
    value = fg.astype(np.uint8) * 255
    Image.fromarray(np.dstack([value, value, value, np.full_like(value, 255)]), "RGBA").save(tmp_path / "opaque.png")
    Image.fromarray(np.dstack([value, value]), "LA").save(tmp_path / "la.png")
    Image.fromarray(np.dstack([value, value, value, value]), "RGBA").save(tmp_path / "agree.png")
    white = np.full_like(value, 255)
    Image.fromarray(np.dstack([white, white, white, value]), "RGBA").save(tmp_path / "ambiguous.png")
    for name in ("opaque.png", "la.png", "agree.png"):
        assert np.array_equal(read_mask_file(tmp_path / name, 4, 5), fg), name
    with pytest.raises(RecordError, match="alpha channel that disagrees"):
        read_mask_file(tmp_path / "ambiguous.png", 4, 5)
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(RecordError, match="not a readable image"):
        read_mask_file(tmp_path / "text.png")
    Image.new("1", (20_000, 10_000)).save(tmp_path / "bomb.png")  # 200 M pixels, a few kB on disk
    with pytest.raises(RecordError, match="limit"):
        read_mask_file(tmp_path / "bomb.png")
    with pytest.raises(RecordError, match="is 5x4 but the image is 4x4"):
        read_mask_file(tmp_path / "opaque.png", 4, 4)


def _hostile_folder(root: Path) -> Path:
    write_image(root / "img.png", 8, 6)
    (root / "notimage.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    Image.new("1", (20_000, 10_000)).save(root / "bomb.png")
    write_image(root.parent / "outside.png", 8, 6)
    square = [1, 1, 5, 1, 5, 4, 1, 4]
    lines = [
        {"image": "img.png", "query": "nan", "targets": [{"polygons": [[0, 0, float("nan"), 0, 3, 3]]}]},
        {"image": "img.png", "query": "huge", "targets": [{"polygons": [[0, 0, 1e30, 0, 3, 3]]}]},
        {"image": "img.png", "query": "not an image", "targets": [{"mask": "notimage.png"}]},
        {"image": "img.png", "query": "bomb", "targets": [{"mask": "bomb.png"}]},
        {"image": "/etc/hostname", "query": "absolute"},
        {"image": "../outside.png", "query": "dotdot"},
        {"image": "img.png", "query": "short rle", "targets": [{"rle": {"size": [6, 8], "counts": [10, 5]}}]},
        {"image": "img.png", "query": "fine", "targets": [{"polygons": [square]}]},
        {"image": "img.png", "query": "two bad", "targets": [{"mask": "notimage.png"}, {"polygons": [[0, 0, 100, 0, 3, 3]]}]},
    ]
    text = "\n".join(json.dumps(line) for line in lines)  # json writes NaN and 1e+30 as Python reads them
    (root / "data.jsonl").write_text(text + "\n\xff\xfe not utf-8\n", encoding="latin-1")
    return root


def test_data_check_lists_every_problem_and_goes_on(tmp_path: Path) -> None:
    root = _hostile_folder(tmp_path / "d")
    report = check_folder(root)
    by_line = {p.line: p.message for p in report.errors}
    assert sorted(by_line) == [1, 2, 3, 4, 5, 6, 7, 9, 10], by_line
    assert "NaN" in by_line[1] and "far outside" in by_line[2]
    assert "not a readable image" in by_line[3] and "limit" in by_line[4]
    assert "absolute path" in by_line[5] and "outside the data folder" in by_line[6]
    assert "sum to 15" in by_line[7] and "UTF-8" in by_line[10]
    assert sum(p.line == 9 for p in report.errors) == 2  # both targets of line 9 reported
    assert report.kinds["segmentation"] == 5  # lines 2, 3, 4, 8, 9 parsed, then their files were checked
    allowed = {p.line for p in check_folder(root, allow_outside_paths=True).errors}
    assert 6 not in allowed and 5 in allowed  # ../outside.png is a real image; /etc/hostname is not one


def test_data_check_subprocess_is_bounded(tmp_path: Path) -> None:
    """The NaN / 1e30 polygons that once grew 5 GB and segfaulted: the real command, capped at 1 GB."""
    root = _hostile_folder(tmp_path / "d")
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)); "
            "from lisa.cli import main; sys.exit(main(['data', 'check', sys.argv[1]]))")
    result = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr  # 1 = errors found (not a crash: -11 / -9)
    assert result.stdout.count(": error: ") == 10 and "Traceback" not in result.stderr
    assert "8 error(s)" not in result.stdout and "10 error(s)" in result.stdout


def test_loaders_name_the_line_of_bad_geometry(tmp_path: Path) -> None:
    root = tmp_path / "d"
    write_image(root / "img.png", 8, 6)
    write_jsonl(root / "data.jsonl", [{"image": "img.png", "query": "q", "targets": [{"rle": {"size": [6, 8], "counts": [3]}}]}])
    with pytest.raises(LisaError, match=r"data.jsonl:1: targets\[0\].rle.counts sum to 3"):
        JsonlEval(root)
    write_jsonl(root / "data.jsonl", [{"image": "img.png", "query": "q", "targets": [{"polygons": [[0, 0, 99, 0, 3, 3]]}]}])
    items = JsonlEval(root)  # the structure is fine; the image size shows the polygon is far outside
    with pytest.raises(LisaError, match=r"data.jsonl:1: targets\[0\].polygons\[0\] has coordinates far outside"):
        items[0]
