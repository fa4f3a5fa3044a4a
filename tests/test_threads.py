"""--threads / threads=: the default follows the free cores, an explicit count is applied."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from lisa import threads
from lisa.cli import main
from lisa.errors import LisaError


@pytest.fixture()
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_default_is_omp_num_threads_when_set(monkeypatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.default_threads() == 3


@pytest.mark.parametrize(("cores", "load", "expected"), [(16, 0.2, 4), (2, 0.1, 2), (2, 1.7, 1), (2, 6.0, 1), (8, 5.0, 3)])
def test_default_is_the_free_cores_at_most_four(monkeypatch, cores, load, expected) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(threads, "usable_cores", lambda: cores)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (load, load, load))
    assert threads.default_threads() == expected


def test_bad_counts_are_refused() -> None:
    for bad in ("0", "-2", "many"):
        with pytest.raises(LisaError):
            threads.parse_threads(bad)
    assert threads.parse_threads("auto") is None and threads.parse_threads(" 2 ") == 2


def test_bad_threads_option_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", "x.png", "q", "--threads", "0"])
    assert exit_info.value.code == 2 and "threads must be at least 1" in capsys.readouterr().err


def test_segment_applies_the_thread_count(tiny_model_dir, tmp_path, restore_threads) -> None:
    Image.fromarray(np.full((16, 16, 3), 80, np.uint8)).save(tmp_path / "in.png")
    torch.set_num_threads(1)
    assert main(["segment", str(tmp_path / "in.png"), "it", "--model", str(tiny_model_dir), "--device", "cpu",
                 "--out", str(tmp_path / "out"), "--max-new-tokens", "2", "--threads", "2"]) == 0
    assert torch.get_num_threads() == 2


def test_pipeline_threads_argument(tiny_model_dir, restore_threads) -> None:
    from lisa.inference.pipeline import LisaPipeline

    torch.set_num_threads(1)
    LisaPipeline.from_pretrained(tiny_model_dir, device="cpu", threads=2)
    assert torch.get_num_threads() == 2
    LisaPipeline.from_pretrained(tiny_model_dir, device="cpu", threads=None)  # None leaves it alone
    assert torch.get_num_threads() == 2
