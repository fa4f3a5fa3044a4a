"""benchmarks/bench_gpu.py runs end to end on the CPU with tiny shapes (every path and section)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bench_gpu_tiny_runs_every_path_and_prints_json_figures() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--tiny", "--runs", "1", "--batches", "1,2",
         "--peak-tflops", "0.5", "--hbm-tbps", "0.02"],
        capture_output=True, text=True, timeout=300, check=True,
    )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    figures = {(row.get("path"), row["figure"], row.get("batch")) for row in lines}
    for path in ("naive", "official", "ours"):
        assert (path, "ms_per_query", 1) in figures
        assert (path, "ms_to_first_seg", 1) in figures
    assert ("naive", "queries_per_s", 2) in figures and ("ours", "queries_per_s", 2) in figures
    assert ("official", "queries_per_s", 2) not in figures  # the released code cannot batch
    limit = next(row for row in lines if row["figure"] == "physical_limit")
    assert limit["prefill_flops"] > 0 and limit["decode_weight_bytes"] > 0
    assert limit["value"] == limit["limit_decode_ms"] + limit["limit_compute_ms"] > 0  # from the override flags
    assert all(row["value"] > 0 for row in lines if row["figure"] == "ratio_to_limit")
    assert {row["path"] for row in lines if row["figure"] == "ratio_to_limit"} == {"naive", "official", "ours"}
    assert all(row["value"] > 0 for row in lines if row["figure"] == "ms_per_query")
    agreement = next(row for row in lines if row["figure"] == "agreement_with_eager")
    assert agreement["value"] == 1.0 and agreement["seg_state_max_abs_diff"] < 1e-4  # fp32 on the CPU
    assert "# size | precision | path" in done.stdout
