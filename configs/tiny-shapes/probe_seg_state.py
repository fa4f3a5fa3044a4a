"""Diagnostic: what does the [SEG] state know about its target? Linear probes of the target's
colour and kind from the hidden state the seg head receives (teacher-forced "[SEG]." answers to
the shapes world's referring queries, or with `--family reasoning` its reasoning queries, whose
target the LM has to infer), fitted on train queries and scored on val queries, each split by
whether the query names that attribute.

If the state carries the named colour and kind, a read of the image tokens queried by it
(`seg_head_image_attention`) has what it needs to pick the object; if not, the LM loses the
query before the seg head sees it.

    python configs/tiny-shapes/probe_seg_state.py --model runs/lisa-tiny-v2/4-reason/model

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json

import torch
from probe_vlm_tokens import fit_predict
from shapes_queries import ShapesQuery, add_probe_arguments, names, shapes_queries

from lisa import LisaPipeline
from lisa.data.shapes.cells import COLOUR_NAMES, KINDS


def seg_states(pipe: LisaPipeline, queries: list[ShapesQuery], batch: int = 16) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The seg head's input states [n, d] for teacher-forced "[SEG]." answers to ``queries``,
    and the image tokens it was given [n, T, d] (None: the head does not read them)."""
    states: list[torch.Tensor] = []
    tokens: list[torch.Tensor] = []
    head = pipe.model.seg_head
    project = head.prompts_and_attention  # every path's way into the seg head

    def recording(hidden: torch.Tensor, image_tokens: torch.Tensor | None = None, *reads: torch.Tensor | None):
        states.append(hidden.detach().float())
        if image_tokens is not None:
            tokens.append(image_tokens.detach().float())
        return project(hidden, image_tokens, *reads)

    head.prompts_and_attention = recording  # type: ignore[method-assign]
    try:
        for start in range(0, len(queries), batch):
            chunk = queries[start : start + batch]
            pipe([q.image for q in chunk], [q.query for q in chunk], answers=["[SEG]."] * len(chunk))
    finally:
        head.prompts_and_attention = project  # type: ignore[method-assign]
    if sum(s.shape[0] for s in states) != len(queries):
        raise SystemExit(f"{sum(s.shape[0] for s in states)} [SEG] states for {len(queries)} queries")
    return torch.cat(states), (torch.cat(tokens) if tokens else None)


def target_labels(queries: list[ShapesQuery]) -> list[dict]:
    """Per query: its main object's colour and kind ids (into COLOUR_NAMES / KINDS, less the
    background) and what the query names."""
    labels = []
    for q in queries:
        target = q.scene.objects[q.target]
        labels.append({"colour": COLOUR_NAMES.index(target.colour) - 1, "kind": KINDS.index(target.kind) - 1,
                       "names": names(q.query)})
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_probe_arguments(parser)
    parser.add_argument("--train-queries", type=int, default=600)
    parser.add_argument("--val-queries", type=int, default=200)
    args = parser.parse_args()
    pipe = LisaPipeline.from_pretrained(args.model, device="cpu", dtype="fp32", threads=args.threads)
    train_queries = shapes_queries(args.family, args.data_dir, "train", args.train_queries)
    val_queries = shapes_queries(args.family, args.data_dir, "val", args.val_queries)
    x_train, x_val = seg_states(pipe, train_queries)[0], seg_states(pipe, val_queries)[0]
    train, val = target_labels(train_queries), target_labels(val_queries)
    report: dict[str, object] = {"model": args.model, "train_queries": len(train), "val_queries": len(val)}
    for attribute, classes in (("colour", len(COLOUR_NAMES) - 1), ("kind", len(KINDS) - 1)):
        y_train = torch.tensor([r[attribute] for r in train])
        y_val = torch.tensor([r[attribute] for r in val])
        predicted = fit_predict(x_train, y_train, x_val, classes)
        named = torch.tensor([attribute in r["names"] for r in val])
        majority = float((y_val == torch.mode(y_train).values).float().mean())
        right = predicted == y_val
        report[attribute] = {
            "probe": round(float(right.float().mean()), 3), "majority": round(majority, 3),
            "probe_when_the_query_names_it": round(float(right[named].float().mean()), 3) if named.any() else None,
            "probe_when_it_does_not": round(float(right[~named].float().mean()), 3) if (~named).any() else None,
            "named_in": int(named.sum())}
    print(json.dumps(report))


if __name__ == "__main__":
    main()
