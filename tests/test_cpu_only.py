"""CPU inference must never touch CUDA: run the pipeline in a process where CUDA init explodes."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "lisa"

SCRIPT = r"""
import torch
def forbidden(*args, **kwargs):
    raise RuntimeError("CUDA was touched during CPU inference")
torch.cuda._lazy_init = forbidden
torch.cuda.init = forbidden
torch.cuda.synchronize = forbidden
torch.cuda.empty_cache = forbidden
import numpy as np
from lisa.inference.pipeline import LisaPipeline
pipe = LisaPipeline.from_pretrained(MODEL, device="cpu", dtype="float32")
image = np.zeros((32, 40, 3), np.uint8)
print(pipe(image, "find it", answers="[SEG].").masks.shape, pipe(image, "find it", max_new_tokens=4).text != None)
"""


@pytest.mark.slow  # a fresh interpreter with CUDA calls forbidden
def test_cpu_inference_needs_no_cuda(tiny_model_dir) -> None:
    script = SCRIPT.replace("MODEL", repr(str(tiny_model_dir)))
    completed = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env={"CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "(1, 32, 40) True" in completed.stdout


def test_no_hard_coded_cuda_calls_in_the_package() -> None:
    offenders = []
    for path in SRC.rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\.cuda\(\)|empty_cache\(\)|device=[\"']cuda", line):
                offenders.append(f"{path.relative_to(SRC)}:{number}: {line.strip()}")
    assert offenders == []
