"""Baselines without an LLM, for the results table.

``text_sam``: a small text encoder trained from scratch (``text_encoder``) produces the one
sparse prompt that SAM's mask decoder receives, exactly where LISA feeds its projected ``[SEG]``
state (the analogue of the paper's X-Decoder / SEEM rows); ``train`` trains it on explicit
queries only; ``commands`` adds ``lisa baseline train|eval``.

Nothing heavy is imported here, so that ``lisa --help`` stays fast.
"""
