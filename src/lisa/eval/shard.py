"""`lisa eval` in many processes: ``accelerate launch [--num_processes N] -m lisa.cli eval ...``.

Process r of N scores the r-th contiguous block of the items (block sizes differ by at most
one), so the blocks in rank order are the items in dataset order. Every process's results are
gathered and merged in rank order: the sums are exact (integers and a Fraction,
``lisa.eval.metrics``), so the report, per-sample list included, equals one process's report.
Each process keeps its own k worst cases; the k worst of all are among them.
"""

from __future__ import annotations

from functools import reduce
from pathlib import Path
from typing import Any, Sequence

from lisa.data.sample import EvalItem
from lisa.eval.evaluate import WorstKeeper
from lisa.eval.report import Results
from lisa.processes import launched_without_gpus, world_size


def process_group() -> Any | None:
    """Accelerate's PartialState under a many-process launch, else None (one process)."""
    if world_size() <= 1:
        return None
    from accelerate import PartialState

    return PartialState(cpu=launched_without_gpus())


def block(count: int, rank: int, world: int) -> range:
    """The indices process ``rank`` of ``world`` scores."""
    return range(count * rank // world, count * (rank + 1) // world)


class Block(Sequence[EvalItem]):
    """One process's block of the items, still lazy (items build their targets when read)."""

    def __init__(self, items: Sequence[EvalItem], rank: int, world: int) -> None:
        self.items, self.indices = items, block(len(items), rank, world)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):  # type: ignore[override]
        return self.items[self.indices[i]]


def gather(results: Results, keeper: WorstKeeper) -> tuple[Results, WorstKeeper]:
    """Every process's results merged in rank order, and the worst cases of all (every process
    gets them)."""
    from accelerate import PartialState
    from accelerate.utils import gather_object

    parts = gather_object([(PartialState().process_index, results, keeper)])
    parts.sort(key=lambda part: part[0])
    merged = reduce(Results.merge, (part[1] for part in parts), Results())
    worst = WorstKeeper(keeper.k)
    for _, _, other in parts:
        worst.absorb(other)
    return merged, worst


def shared_stage(stage: Path | None) -> Path:
    """The main process's staging folder, told to every process (they write into it)."""
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([stage])[0]
