"""The learning-rate schedule of every lisa-seg training loop.

The official LISA recipe uses DeepSpeed's ``WarmupDecayLR`` (``train_ds.py``: warm-up type
linear, minimum 0, 100 warm-up steps): the factor rises linearly from 0 at step 0 to 1 at the
end of warm-up, then falls linearly to 0 at the last step.
"""

from __future__ import annotations


def lr_factor(step: int, warmup: int, total: int) -> float:
    """The multiple of the base learning rate at optimizer step ``step`` (0-based)."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))
