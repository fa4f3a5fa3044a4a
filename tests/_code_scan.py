"""Guard tests' scan: where the package's code (strings and comments left out) names a thing
that only an adapter may name."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lisa"


def names_outside(allowed: tuple[str, ...], forbidden: re.Pattern[str]) -> list[str]:
    """``file: match`` for every ``forbidden`` match in a module whose path (relative to
    src/lisa) starts with none of ``allowed``."""
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).as_posix()
        if name.startswith(allowed):
            continue
        tokens = tokenize.generate_tokens(io.StringIO(path.read_text()).readline)
        code = " ".join(t.string for t in tokens if t.type not in (tokenize.STRING, tokenize.COMMENT))
        offenders += [f"{name}: {m.group(0)}" for m in forbidden.finditer(code.replace(" . ", "."))]
    return offenders
