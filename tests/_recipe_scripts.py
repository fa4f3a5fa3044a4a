"""The scripts under configs/tiny-shapes/ are run by path, not imported from a package: load
one as a module so that a test can call its functions."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

RECIPE_DIR = Path(__file__).parents[1] / "configs" / "tiny-shapes"


def load_recipe_script(name: str) -> ModuleType:
    """``configs/tiny-shapes/<name>.py`` as a fresh module (a new copy on every call, so that a
    test's monkeypatching of one copy does not reach the next). Its folder goes on the import
    path, as ``python configs/tiny-shapes/<name>.py`` puts it there, for the scripts that import
    their siblings."""
    if str(RECIPE_DIR) not in sys.path:
        sys.path.insert(0, str(RECIPE_DIR))
    spec = importlib.util.spec_from_file_location(name, RECIPE_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
