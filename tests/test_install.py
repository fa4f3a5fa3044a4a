"""Installable anywhere: a real wheel in a fresh venv finds the shipped model without the
source tree; a Hugging Face hub id resolves offline from a cache laid out like the hub's."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RAIN = "What in this picture would keep you dry in the rain? Please output segmentation mask."
REVISION = "0123456789abcdef0123456789abcdef01234567"

pytestmark = pytest.mark.slow  # fresh interpreters, a wheel build


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "LISA_MODELS_DIR")}
    return {**env, **extra}


def _hub_cache(root: Path, repo_id: str, model_dir: Path) -> Path:
    """models--org--name/{blobs/<sha256>, snapshots/<rev>/<file> -> ../../blobs/<sha256>, refs/main}."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    for file in sorted(model_dir.iterdir()):
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        shutil.copyfile(file, repo / "blobs" / digest)
        (snapshot / file.name).symlink_to(Path("..", "..", "blobs", digest))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(REVISION)
    return root


def test_a_hub_id_loads_offline_from_the_cache(tiny_model_dir, tmp_path) -> None:
    cache = _hub_cache(tmp_path / "hub", "lisa-test/tiny-random", tiny_model_dir)
    script = (
        "from lisa.inference.pipeline import LisaPipeline\n"
        "from lisa.errors import LisaError\n"
        "import numpy as np\n"
        "for name in ('lisa-test/tiny-random', 'lisa-test/tiny-random@" + REVISION + "'):\n"
        "    pipe = LisaPipeline.from_pretrained(name, device='cpu')\n"
        "    print('loaded', name, pipe(np.zeros((8, 8, 3), np.uint8), 'hi', max_new_tokens=2).masks.ndim)\n"
        "try:\n"
        "    LisaPipeline.from_pretrained('lisa-test/not-cached', device='cpu')\n"
        "except LisaError as error:\n"
        "    print('refused:', error)\n"
    )
    env = _clean_env(PYTHONPATH=str(ROOT / "src"), HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "loaded lisa-test/tiny-random 3" in done.stdout
    assert f"loaded lisa-test/tiny-random@{REVISION} 3" in done.stdout
    assert "refused: lisa-test/not-cached is not in the Hugging Face cache" in done.stdout


def test_the_cli_takes_a_hub_id(tiny_model_dir, tmp_path) -> None:
    cache = _hub_cache(tmp_path / "hf" / "hub", "lisa-test/tiny-random", tiny_model_dir)
    env = _clean_env(PYTHONPATH=str(ROOT / "src"), HF_HOME=str(cache.parent), HF_HUB_OFFLINE="1")
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run([sys.executable, "-m", "lisa.cli", "segment", str(ROOT / "examples" / "umbrella.jpg"), "hi",
                           "--model", "lisa-test/tiny-random", "--device", "cpu", "--out", str(tmp_path / "out"),
                           "--max-new-tokens", "4"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "result.json").is_file()


def test_the_wheel_installs_and_segments_outside_the_checkout(tmp_path) -> None:
    source = tmp_path / "source"  # a copy, so building writes nothing into the checkout
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels),
                    str(source)], check=True, env=_clean_env(), timeout=600)
    wheel = next(wheels.glob("lisa_seg-*.whl"))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True,
                   env=_clean_env(), timeout=300)
    # the dependencies come from this interpreter's site-packages (appended after the venv's own)
    site = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    deps = [p for p in sys.path if p.endswith("site-packages")]
    Path(site, "main-venv-deps.pth").write_text("\n".join(deps) + "\n")

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(ROOT / "examples" / "umbrella.jpg", elsewhere / "photo.jpg")
    where = subprocess.run([str(python), "-c", "import lisa; print(lisa.__file__)"], cwd=elsewhere,
                           env=_clean_env(), capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(venv))  # the wheel's copy, not the source tree
    done = subprocess.run([str(venv / "bin" / "lisa"), "segment", "photo.jpg", RAIN, "--device", "cpu", "--out", "out"],
                          cwd=elsewhere, env=_clean_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "[SEG]" in done.stdout and (elsewhere / "out" / "result.json").is_file()


def test_the_dockerfile_pins_the_same_cpu_torch_as_pyproject() -> None:
    import re

    dockerfile = (ROOT / "Dockerfile").read_text()
    pinned = re.search(r'"torch==([\w.+]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert f"--index-url https://download.pytorch.org/whl/cpu torch=={pinned}" in dockerfile
    assert 'ENTRYPOINT ["lisa", "serve", "api"' in dockerfile and "USER 1000" in dockerfile
