"""Answer accuracy of text-only (VQA) records in `lisa eval`."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from lisa.cli import main
from lisa.eval.answers import normalise


def test_normalise_ignores_case_punctuation_and_spacing() -> None:
    assert normalise("There are 3 circles.") == normalise("there are  3 circles")
    assert normalise("Yes, there is.") != normalise("No, there is not.")


def test_eval_scores_text_only_records_by_answer(tiny_model_dir, tmp_path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(data / "a.png")
    (data / "vqa.jsonl").write_text(json.dumps({"image": "a.png", "query": "How many?", "answer": "Two."}) + "\n")
    out = tmp_path / "report.json"
    code = main(["eval", "--model", str(tiny_model_dir), "--dataset", "jsonl", "--data-dir", str(data),
                 "--device", "cpu", "--max-new-tokens", "4", "--no-progress", "--out", str(out)])
    assert code == 0
    answers = json.loads(out.read_text())["answers"]
    assert answers["n"] == 1 and answers["accuracy"] in (0.0, 1.0)
    assert answers["accuracy"] == 1.0 or answers["mistakes"][0]["expected"] == "Two."
