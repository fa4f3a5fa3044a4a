"""A mixture sampler over training sources with sample rates (the official ``utils/dataset.py:HybridDataset``).

Every position ``i`` of the stream is a pure function of ``(seed, i)``: its own RNG picks the
group by rate, a source uniformly inside the group, an item uniformly inside the source, and
drives that source's template choices. So the stream is deterministic under a seed and
resumes from any position without replaying the past. A source whose item has nothing to
train on returns None; the position then redraws a source and item inside the same group
(the group's rate is kept), with the same RNG and a bounded number of attempts.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, Protocol, Sequence

from lisa.data.sample import Sample
from lisa.errors import LisaError

DEFAULT_GROUPS = ("sem_seg", "refer_seg", "vqa", "reason_seg")
DEFAULT_RATES = (9.0, 3.0, 3.0, 1.0)
MAX_REDRAWS = 100


class TrainSource(Protocol):
    """What every training loader offers: a length and a sample per index."""

    source: str

    def __len__(self) -> int: ...

    def sample(self, index: int, rng: random.Random) -> Sample | None: ...


def parse_rates(text: str) -> list[float]:
    """"9,3,3,1" -> [9.0, 3.0, 3.0, 1.0]."""
    try:
        rates = [float(v) for v in text.split(",")]
    except ValueError:
        raise LisaError(f"sample rates {text!r} must be comma-separated numbers, e.g. 9,3,3,1") from None
    if any(r < 0 for r in rates) or sum(rates) <= 0:
        raise LisaError(f"sample rates {text!r} must be non-negative with a positive sum")
    return rates


@dataclass
class Mixture:
    """Groups of sources (e.g. sem_seg = [ade20k, cocostuff, ...]) drawn with ``rates``."""

    groups: Sequence[Sequence[TrainSource]]
    rates: Sequence[float]
    seed: int = 0

    def __post_init__(self) -> None:
        if len(self.groups) != len(self.rates):
            raise LisaError(f"{len(self.groups)} dataset groups but {len(self.rates)} sample rates")
        for k, group in enumerate(self.groups):
            if self.rates[k] > 0 and (not group or any(len(s) == 0 for s in group)):
                raise LisaError(f"dataset group {k} has a positive rate but an empty source")

    def rng(self, position: int) -> random.Random:
        """The RNG of one stream position (independent of every other position)."""
        return random.Random(f"{self.seed}:{position}")

    def draw(self, position: int) -> Sample:
        """The sample at ``position``."""
        rng = self.rng(position)
        group = self.groups[rng.choices(range(len(self.groups)), weights=self.rates)[0]]
        for _ in range(MAX_REDRAWS):  # redraw inside the group, as the official loaders recurse
            source = group[rng.randrange(len(group))]
            sample = source.sample(rng.randrange(len(source)), rng)
            if sample is not None:
                return sample
        raise LisaError(f"position {position}: {MAX_REDRAWS} draws found nothing to train on; check the datasets")

    def stream(self, start: int = 0) -> Iterator[Sample]:
        """Samples at positions start, start + 1, ... (resume by passing the saved position)."""
        position = start
        while True:
            yield self.draw(position)
            position += 1
