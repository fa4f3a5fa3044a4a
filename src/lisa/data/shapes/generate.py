"""Generate one split of the shapes world: scenes, then every query family's files.

Scene ``i`` of split ``s`` draws from its own RNG, ``default_rng([seed, SPLIT_IDS[s], i])``,
so splits never share a stream and any scene can be regenerated alone. Families added later
(``absent``, ``present``) draw from streams of their own, and ``locate`` is derived from the referring queries
without any draw, so that the earlier families' files stay the same.
"""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from lisa.data.shapes.facts import HELD_OUT, corpus_records
from lisa.data.shapes.queries import (Query, absent_queries, locate_queries, present_queries,
                                      referring_queries, semantic_queries, vqa_queries)
from lisa.data.shapes.reasoning import candidates, plan
from lisa.data.shapes.scene import MAX_OBJECTS, Scene, sample_scene
from lisa.data.shapes.writer import (encode_rle, reason_seg_shapes, write_jpeg, write_json,
                                     write_jsonl)
from PIL import Image

SPLIT_IDS = {"train": 0, "val": 1, "test": 2}
DEFAULT_N = {"train": 2000, "val": 200, "test": 200}
PER_SCENE = {"semantic": 2, "referring": 3, "vqa": 2, "absent": 1, "present": 1}  # queries per scene and family
JSONL_FAMILIES = ("semantic", "referring", "vqa", "absent", "present", "locate")
# Families with their own RNG, default_rng([seed, split id, scene, STREAM]), so that adding one
# leaves every file written before it byte for byte the same.
ABSENT_STREAM = 1
PRESENT_STREAM = 2


def scene_name(split: str, index: int) -> str:
    return f"{split}_{index:05d}"


def pick_reasoning(rng: np.random.Generator, size: int, split: str,
                   max_objects: int = MAX_OBJECTS) -> tuple[Scene, Query, list[dict[str, Any]]]:
    """A scene and its reasoning query whose target polygons rasterise exactly."""
    while True:  # almost always one pass; a new scene only if no query fits
        chosen = plan(rng, split)
        scene = sample_scene(rng, size, chosen.planted, max_objects)
        for query in candidates(rng, scene, split, chosen):
            shapes = reason_seg_shapes(scene.target_mask(query.targets))
            if shapes is not None:
                return scene, query, shapes


def jsonl_record(name: str, scene: Scene, query: Query) -> dict[str, Any]:
    record: dict[str, Any] = {
        "image": f"{name}.jpg",
        "query": query.texts[0],
        "is_sentence": query.is_sentence,
        # One RLE per object; the loader unions them into one mask for one [SEG].
        "targets": [{"rle": encode_rle(scene.target_mask([t]))} for t in query.targets],
    }
    if query.answer is not None:
        record["answer"] = query.answer
    return record


def generate_scene(out: Path, split: str, index: int, seed: int, size: int,
                   records: dict[str, list[dict[str, Any]]], counts: Counter, max_objects: int = MAX_OBJECTS) -> None:
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
    name = scene_name(split, index)
    scene, reasoning, shapes = pick_reasoning(rng, size, split, max_objects)
    write_jpeg(out / f"{name}.jpg", scene.image)
    write_json(out / f"{name}.json",
               {"text": reasoning.texts, "is_sentence": reasoning.is_sentence, "shapes": shapes})
    counts["reasoning"] += 1
    counts["reasoning_no_target" if not reasoning.targets else
           "reasoning_multi_target" if len(reasoning.targets) > 1 else "reasoning_single_target"] += 1
    counts["reasoning_sentence" if reasoning.is_sentence else "reasoning_phrase"] += 1
    counts[f"objects_{len(scene.objects)}"] += 1
    if reasoning.answer is not None:
        records["explanatory"].append(
            {"image": f"{name}.jpg", "query": reasoning.texts[0], "outputs": reasoning.answer})
    if reasoning.fact_answer is not None:
        records["explanatory-facts"].append(
            {"image": f"{name}.jpg", "query": reasoning.texts[0], "outputs": reasoning.fact_answer})
    families = {"semantic": semantic_queries, "referring": referring_queries, "vqa": vqa_queries,
                "absent": absent_queries, "present": present_queries}
    own_stream = {"absent": np.random.default_rng([seed, SPLIT_IDS[split], index, ABSENT_STREAM]),
                  "present": np.random.default_rng([seed, SPLIT_IDS[split], index, PRESENT_STREAM])}
    queries = {family: make(own_stream.get(family, rng), scene, PER_SCENE[family])
               for family, make in families.items()}
    queries["locate"] = locate_queries(scene, queries["referring"])
    for family in JSONL_FAMILIES:
        for query in queries[family]:
            records[family].append(jsonl_record(name, scene, query))
            counts[family] += 1


def clear_previous(out: Path, split: str) -> None:
    """Remove files an earlier run wrote here, so a smaller --n leaves no stale scenes."""
    for path in list(out.glob(f"{split}_*.jpg")) + list(out.glob(f"{split}_*.json")):
        path.unlink()


def generate_split(root: Path, split: str, n: int, seed: int, size: int, max_objects: int = MAX_OBJECTS,
                   split_dir: Path | None = None) -> dict[str, Any]:
    """Write ``root/split/`` (or ``split_dir``, a staging folder that becomes it) and the split's
    shared files under ``root`` (explanatory/, meta/, facts.jsonl, blank.png): ``n`` scenes of 1
    to ``max_objects`` objects each (fewer: an easier world for a curriculum; the default writes
    the same bytes as before the option existed)."""
    out = split_dir or root / split
    out.mkdir(parents=True, exist_ok=True)
    (root / "explanatory").mkdir(exist_ok=True)
    clear_previous(out, split)
    start = time.perf_counter()
    records: dict[str, list[dict[str, Any]]] = {k: [] for k in JSONL_FAMILIES + ("explanatory", "explanatory-facts")}
    counts: Counter = Counter()
    for index in range(n):
        generate_scene(out, split, index, seed, size, records, counts, max_objects)
    for family in JSONL_FAMILIES:
        write_jsonl(out / f"{family}.jsonl", records[family])
    write_json(root / "explanatory" / f"{split}.json", records["explanatory"])
    # The same explanations for queries that need a fact, naming only what the fact picks
    # (no colour read off the image) and none for the rules: `explain_first` training reads these.
    write_json(root / "explanatory" / f"{split}-facts.json", records["explanatory-facts"])
    counts["explanatory"] = len(records["explanatory"])
    write_corpus(root, size)
    meta = {
        "split": split, "scenes": n, "seed": seed, "size": size,
        "counts": dict(sorted(counts.items())),
        "held_out_concepts": [c.key for c in HELD_OUT],
        "concept_policy": "train/val reasoning queries use only seen concepts; test reasoning "
                          "queries use only held-out concepts (and fact-free rules); "
                          "facts.jsonl states all concepts.",
    }
    if max_objects != MAX_OBJECTS:  # the default world's meta stays byte for byte as before
        meta["max_objects"] = max_objects
    # Not in OUT/SPLIT/: the ReasonSeg loader reads every *.json there as an annotation.
    (root / "meta").mkdir(exist_ok=True)
    write_json(root / "meta" / f"{split}.json", meta)
    meta["seconds"] = round(time.perf_counter() - start, 2)  # printed, not written (determinism)
    return meta


def write_corpus(root: Path, size: int) -> None:
    """The text-only facts and the blank image they are paired with (same for every split)."""
    Image.new("RGB", (size, size), (255, 255, 255)).save(root / "blank.png")
    write_jsonl(root / "facts.jsonl", [dict(r, targets=[]) for r in corpus_records()])
