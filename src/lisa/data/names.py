"""The one registry of dataset names: every choice list, check and message reads these.

Evaluation (``lisa eval --dataset``, a training config's ``val.dataset``) accepts
``EVAL_DATASETS``; the referring loader (``lisa.data.refer_seg``) reads ``REFER_DATASETS``.
"""

from __future__ import annotations

REFER_DATASETS = ("refcoco", "refcoco+", "refcocog", "refclef", "grefcoco")
EVAL_DATASETS = ("reasonseg", *REFER_DATASETS, "jsonl")
