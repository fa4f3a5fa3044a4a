"""A restricted unpickler for untrusted annotation pickles (``refs(unc).p``, ``grefs(unc).p``).

Only plain data is built: dicts, lists, tuples, str, bytes, numbers, bools, None, and the
builtin ``set`` / ``frozenset`` (bytes pickled at protocol < 3 go through a latin1-only stand-in
for ``_codecs.encode``). Any other global (a class, a function such as ``os.system``)
is refused before it is imported, so a malicious file cannot run code.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from lisa.errors import LisaError

_ALLOWED = {
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("__builtin__", "set"),
    ("__builtin__", "frozenset"),
}




def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """What ``_codecs.encode`` does for bytes pickled by Python 3 at protocol < 3, and no more."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("refusing _codecs.encode other than str -> latin1 bytes")
    return text.encode("latin1")


class RestrictedUnpickler(pickle.Unpickler):
    """Refuses every global outside ``_ALLOWED`` (plus a latin1-only ``_codecs.encode``)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return set if name == "set" else frozenset
        if (module, name) == ("_codecs", "encode"):
            return _latin1_bytes
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only plain data is allowed")


def loads(data: bytes) -> Any:
    """Unpickle plain data from bytes (Python 2 `str` objects are decoded as UTF-8)."""
    return RestrictedUnpickler(io.BytesIO(data), encoding="utf-8").load()


def load(path: Path) -> Any:
    """Unpickle plain data from a file; a refused or broken pickle raises LisaError naming it."""
    try:
        return loads(Path(path).read_bytes())
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as error:
        raise LisaError(f"{path}: cannot be read as a plain-data pickle ({error}); "
                        "convert it to JSON with the same content and pass the .json file") from None
