"""Peak memory of `lisa convert official` on a sharded checkpoint, against the largest shard.

Builds a released-layout LISA checkpoint (~200 MB in bf16, 8 `pytorch_model-*.bin` shards),
converts it in a child process under `/usr/bin/time -v`, and prints the child's peak RSS, the
peak RSS of a process that only imports the converter (the fixed cost), and the shard sizes.

    python benchmarks/bench_convert.py [--shards 8] [--layers 8] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

MIB = 1024 * 1024


def peak_rss_mib(command: list[str]) -> float:
    result = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True, check=True)
    match = re.search(r"Maximum resident set size \(kbytes\): (\d+)", result.stderr)
    return int(match.group(1)) / 1024


def build(workdir: Path, shards: int, layers: int) -> tuple[Path, Path]:
    from lisa.interop.fixtures import official_tiny_size, write_tiny_official

    size = official_tiny_size(text_hidden=1024, text_layers=layers, text_heads=8, text_intermediate=2816)
    tiny = write_tiny_official(workdir, size=size, shards=shards, fmt="bin")
    return tiny.directory, tiny.clip_dir


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--workdir", default=None)
    args = parser.parse_args()
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="bench-convert-"))
    src, clip = build(workdir, args.shards, args.layers)
    shard_sizes = sorted(p.stat().st_size / MIB for p in src.glob("pytorch_model-*.bin"))
    lisa = [sys.executable, "-m", "lisa.cli"]
    imports = peak_rss_mib([sys.executable, "-c", "import lisa.interop.official"])
    convert = peak_rss_mib([*lisa, "convert", "official", "--src", str(src), "--vision-tower", str(clip),
                            "--out", str(workdir / "converted")])
    print(f"checkpoint: {sum(shard_sizes):.1f} MiB in {len(shard_sizes)} shards, largest {shard_sizes[-1]:.1f} MiB")
    print(f"peak RSS, import only:  {imports:.1f} MiB")
    print(f"peak RSS, conversion:   {convert:.1f} MiB")
    print(f"conversion - import:    {convert - imports:.1f} MiB "
          f"({(convert - imports) / shard_sizes[-1]:.2f} x largest shard, "
          f"{(convert - imports) / sum(shard_sizes):.2f} x whole checkpoint)")


if __name__ == "__main__":
    main()
