"""Rewrite the golden outputs from today's code, on purpose: `python tests/golden/regenerate.py`.

Run it only when a change of output is intended (a retrained model, a deliberate fix), and
review the diff of tests/golden/*.json like any other change. Needs PYTHONPATH=src (or an
installed lisa-seg); CPU only.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cases import CONFIGS, golden_path, run_cases, write  # noqa: E402


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        for model, dtype in CONFIGS:
            path = golden_path(model, dtype)
            write(run_cases(model, dtype, Path(scratch)), path)
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
