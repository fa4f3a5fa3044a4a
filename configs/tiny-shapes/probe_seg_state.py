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
from pathlib import Path

import torch
from probe_seg_attention import names
from probe_vlm_tokens import fit_predict

from lisa import LisaPipeline
from lisa.data.shapes.cells import COLOUR_NAMES, KINDS
from lisa.data.shapes.redraw import record_mask, redraw_scene


def seg_states(pipe: LisaPipeline, split_dir: Path, limit: int,
               batch: int = 16) -> tuple[torch.Tensor, torch.Tensor | None, list[dict]]:
    """The seg head's input states [n, d] for the first ``limit`` referring queries with a target
    of a split (teacher-forced "[SEG]."), the image tokens it was given [n, T, d] (None: the head
    does not read them) and the records."""
    records = [json.loads(line) for line in (split_dir / "referring.jsonl").open()]
    records = [r for r in records if r["targets"]][:limit]
    states, tokens = states_for(pipe, [str(split_dir / r["image"]) for r in records], [r["query"] for r in records], batch)
    return states, tokens, records


def states_for(pipe: LisaPipeline, images: list, queries: list[str],
               batch: int = 16) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The seg head's input states [n, d] for teacher-forced "[SEG]." answers to ``queries`` on
    ``images`` (paths or arrays), and the image tokens it was given [n, T, d] (None: no read)."""
    states: list[torch.Tensor] = []
    tokens: list[torch.Tensor] = []
    head = pipe.model.seg_head
    project = head.prompts_and_attention  # every path's way into the seg head

    def recording(hidden: torch.Tensor, image_tokens: torch.Tensor | None = None):
        states.append(hidden.detach().float())
        if image_tokens is not None:
            tokens.append(image_tokens.detach().float())
        return project(hidden, image_tokens)

    head.prompts_and_attention = recording  # type: ignore[method-assign]
    try:
        for start in range(0, len(queries), batch):
            pipe(images[start : start + batch], queries[start : start + batch],
                 answers=["[SEG]."] * len(queries[start : start + batch]))
    finally:
        head.prompts_and_attention = project  # type: ignore[method-assign]
    if sum(s.shape[0] for s in states) != len(queries):
        raise SystemExit(f"{sum(s.shape[0] for s in states)} [SEG] states for {len(queries)} queries")
    return torch.cat(states), (torch.cat(tokens) if tokens else None)


def reasoning_states(pipe: LisaPipeline, split: str, scenes: int) -> tuple[torch.Tensor, list[dict]]:
    """States and target labels (as ``target_labels``) for the reasoning queries of the first
    ``scenes`` scenes of a split, redrawn as ``lisa shapes generate`` drew them (first target)."""
    images, queries, labels = [], [], []
    for index in range(scenes):
        scene, reasoning = redraw_scene(split, index)
        if not reasoning.targets:
            continue
        target = scene.objects[reasoning.targets[0][0]]
        images.append(scene.image)
        queries.append(reasoning.texts[0])
        labels.append({"colour": COLOUR_NAMES.index(target.colour) - 1, "kind": KINDS.index(target.kind) - 1,
                       "names": names(reasoning.texts[0])})
    return states_for(pipe, images, queries)[0], labels


def target_labels(split: str, records: list[dict]) -> list[dict]:
    """Per record: its target's colour and kind ids (into COLOUR_NAMES / KINDS, less the
    background) and what its query names."""
    labels = []
    for record in records:
        size = record["targets"][0]["rle"]["size"][0]
        truth = record_mask(record, size)
        scene, _ = redraw_scene(split, int(Path(record["image"]).stem.split("_")[-1]), size=size)
        target = scene.objects[max(range(len(scene.objects)), key=lambda i: int((scene.object_mask(i) & truth).sum()))]
        labels.append({"colour": COLOUR_NAMES.index(target.colour) - 1, "kind": KINDS.index(target.kind) - 1,
                       "names": names(record["query"])})
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--data-dir", type=Path, default=Path("data/shapes"))
    parser.add_argument("--train-queries", type=int, default=600)
    parser.add_argument("--val-queries", type=int, default=200)
    parser.add_argument("--family", choices=["referring", "reasoning"], default="referring",
                        help="reasoning: one query per scene, so the query counts are scenes")
    parser.add_argument("--threads", default="auto")
    args = parser.parse_args()
    pipe = LisaPipeline.from_pretrained(args.model, device="cpu", dtype="fp32", threads=args.threads)
    if args.family == "reasoning":
        x_train, train = reasoning_states(pipe, "train", args.train_queries)
        x_val, val = reasoning_states(pipe, "val", args.val_queries)
    else:
        x_train, _, train_records = seg_states(pipe, args.data_dir / "train", args.train_queries)
        x_val, _, val_records = seg_states(pipe, args.data_dir / "val", args.val_queries)
        train, val = target_labels("train", train_records), target_labels("val", val_records)
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
