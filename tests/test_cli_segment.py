"""`lisa segment` and `lisa chat` write what they promise (real files, the tiny random model)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from lisa.cli import main
from lisa.inference.render import PALETTE, draw_overlay, enlarge, legend_rows, mask_record, overlay_figure, write_outputs


def test_segment_writes_overlay_and_result(tiny_model_dir, tmp_path, capsys) -> None:
    Image.fromarray(np.full((30, 40, 3), 120, np.uint8)).save(tmp_path / "in.png")
    out = tmp_path / "out"
    code = main(["segment", str(tmp_path / "in.png"), "find <image> [SEG]", "--model", str(tiny_model_dir),
                 "--out", str(out), "--device", "cpu", "--max-new-tokens", "6"])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["query"] == "find <image> [SEG]" and result["image_size"] == [30, 40]
    assert len(list(out.glob("mask_*.png"))) == len(result["masks"])
    overlay = Image.open(out / "overlay.png")  # enlarged x13 to at least 512 px, a legend below
    assert overlay.width == 40 * 13 and overlay.height > 30 * 13
    assert result["text"] in capsys.readouterr().out


def test_written_masks_and_rle_round_trip(tmp_path) -> None:
    image = np.zeros((20, 30, 3), np.uint8)
    masks = np.zeros((2, 20, 30), bool)
    masks[0, 2:8, 3:9] = True
    masks[1, 10:20, 0:30] = True
    write_outputs(tmp_path, image, "q", "[SEG] and [SEG].", masks, np.array([0.9, 0.8]), {"total_ms": 1.0})
    result = json.loads((tmp_path / "result.json").read_text())
    assert [m["bbox"] for m in result["masks"]] == [[3, 2, 6, 6], [0, 10, 30, 10]]
    assert [m["area"] for m in result["masks"]] == [36, 300]
    for index, record in enumerate(result["masks"]):
        decoded = mask_utils.decode({"size": record["rle"]["size"], "counts": record["rle"]["counts"].encode()})
        assert np.array_equal(decoded.astype(bool), masks[index])
        assert np.array_equal(np.asarray(Image.open(tmp_path / f"mask_{index}.png")) > 0, masks[index])


def test_overlay_fills_masks_in_strong_colours_and_dims_the_rest() -> None:
    image = np.full((10, 10, 3), 100, np.uint8)
    masks = np.zeros((2, 10, 10), bool)
    masks[0, 1:5, 1:5] = True
    masks[1, 6:10, 6:10] = True
    overlay = draw_overlay(image, masks, dim_rest=True).astype(int)
    assert (overlay[0, 9] < 100).all()  # outside every mask: dimmed
    assert (draw_overlay(image, masks)[0, 9] == 100).all()  # unless asked not to (the API's overlay)
    for index, (y, x) in enumerate([(2, 2), (8, 8)]):  # inside: most of the way to the mask's colour
        assert np.abs(overlay[y, x] - PALETTE[index]).max() < 0.4 * np.abs(100 - PALETTE[index]).max()
    assert (draw_overlay(image, masks[:0]) == 100).all()  # no mask: the image as it is
    assert mask_record(np.zeros((3, 3), bool), 0.0)["bbox"] == [0, 0, 0, 0]


def test_overlay_figure_enlarges_small_images_and_has_a_legend() -> None:
    image = np.full((20, 30, 3), 200, np.uint8)
    masks = np.zeros((1, 20, 30), bool)
    masks[0, 5:15, 5:15] = True
    figure = np.asarray(overlay_figure(image, masks, "the red star", "Sure, [SEG].", np.array([0.8])))
    assert figure.shape[1] == 30 * 18 and figure.shape[0] > 20 * 18  # x18: the long side reaches 512
    np.testing.assert_array_equal(figure[: 20 * 18, : 30 * 18], draw_overlay(enlarge(image, 18), enlarge(masks[0], 18)[None], dim_rest=True))
    legend = figure[20 * 18 :]
    assert (legend != 255).any(axis=-1).sum() > 200  # text was drawn
    swatch = np.all(legend == PALETTE[0].astype(np.uint8), axis=-1)
    assert swatch.sum() >= 100  # the mask's colour swatch


def test_the_legend_says_why_a_mask_is_empty() -> None:
    masks = np.zeros((3, 4, 5), bool)
    masks[0, :2, :] = True  # 10 px of 20
    rows = legend_rows(masks, "q", "[SEG] [SEG] [SEG]", np.array([0.9, 0.0, 0.0]), np.array([True, True, False]))
    assert [text for text, _ in rows] == [
        "Q: q", "A: [SEG] [SEG] [SEG]", "[SEG] 1: 10 px (50.0 %), score 0.90",
        "[SEG] 2: 0 px (0.0 %), score 0.00 (empty: the decoder found nothing)",
        "[SEG] 3: 0 px (0.0 %), score 0.00 (empty: judged absent)"]
    assert [colour for _, colour in rows[2:]] == [tuple(int(c) for c in PALETTE[i]) for i in range(3)]
    assert legend_rows(masks[1:2], "q", "[SEG]")[2][0] == "[SEG] 1: 0 px (0.0 %) (empty: the decoder found nothing)"
    assert legend_rows(masks[:0], "q", "no")[2][0] == "no mask: the answer has no [SEG]"


def test_chat_keeps_history_and_writes_each_turn(tiny_model_dir, tmp_path, monkeypatch, capsys) -> None:
    Image.fromarray(np.full((24, 24, 3), 50, np.uint8)).save(tmp_path / "in.png")
    answers = iter(["what is it?", "and now?", ""])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    code = main(["chat", str(tmp_path / "in.png"), "--model", str(tiny_model_dir), "--out", str(tmp_path / "chat"),
                 "--device", "cpu", "--max-new-tokens", "4"])
    assert code == 0
    assert (tmp_path / "chat" / "turn_0" / "result.json").is_file()
    assert (tmp_path / "chat" / "turn_1" / "result.json").is_file()
    assert capsys.readouterr().out.count("lisa> ") == 2


def test_empty_masks_are_named_in_the_summary_line() -> None:
    from lisa.inference.commands import _empty_note

    masks = np.zeros((3, 4, 4), bool)
    masks[0, 1, 1] = True
    assert _empty_note(masks) == " (2 empty)"
    assert _empty_note(masks[:1]) == "" and _empty_note(np.zeros((0, 4, 4), bool)) == ""
