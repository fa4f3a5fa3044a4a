"""The README, the model card and docs/lisa-tiny.md quote the same results, and their links resolve."""

from __future__ import annotations

import re
from pathlib import Path

from lisa.inference.resolve import shipped_models_dir

ROOT = Path(__file__).resolve().parents[1]


def _result_rows(path: Path) -> dict[str, list[str]]:
    """Rows of the first results table (header "| model | short gIoU ..."), by model name (bold removed)."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| model | short gIoU"))
    rows = {}
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        cells = [cell.strip().strip("*") for cell in line.strip("|").split("|")]
        rows[re.sub(r" \((shipped|this model)\)", "", cells[0])] = cells[1:]
    return rows


def test_results_tables_agree() -> None:
    readme = _result_rows(ROOT / "README.md")
    assert len(readme) == 3
    assert _result_rows(ROOT / "docs" / "lisa-tiny.md") == readme
    card = shipped_models_dir() / "lisa-tiny" / "README.md"  # the model card, beside the weights
    assert _result_rows(card) == readme


def test_readme_links_resolve() -> None:
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), target
