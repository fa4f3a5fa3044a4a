"""`lisa shapes generate`: file layout, formats, determinism, and no held-out leaks in train."""


from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from lisa.data.shapes.commands import register
from lisa.data.shapes.facts import HELD_OUT
from lisa.data.shapes.writer import rasterize_reason_seg
from lisa.errors import LisaError


def _generate(out: Path, split: str, n: int, seed: int = 0, size: int = 256, *flags: str) -> int:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["shapes", "generate", "--out", str(out), "--split", split,
                              "--n", str(n), "--seed", str(seed), "--size", str(size), *flags])
    return args.run(args)


pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:pycocotools")


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _all_texts(root: Path, split: str) -> list[str]:
    texts: list[str] = []
    for path in sorted((root / split).glob(f"{split}_*.json")):
        texts += json.loads(path.read_text())["text"]
    for family in ("semantic", "referring", "vqa", "absent", "present", "locate"):
        for r in _read_jsonl(root / split / f"{family}.jsonl"):
            texts += [r["query"], r.get("answer", "")]
    for r in json.loads((root / "explanatory" / f"{split}.json").read_text()):
        texts += [r["query"], r["outputs"]]
    return texts


@pytest.fixture(scope="module")
def train_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes")
    assert _generate(root, "train", 40) == 0
    return root


def test_layout_and_formats(train_root: Path) -> None:
    split = train_root / "train"
    images = sorted(split.glob("*.jpg"))
    assert len(images) == 40 and len(list(split.glob("*.json"))) == 40  # one JSON per image
    assert (train_root / "blank.png").is_file() and (train_root / "meta" / "train.json").is_file()
    for image in images:
        anno = json.loads(image.with_suffix(".json").read_text())
        assert set(anno) == {"text", "is_sentence", "shapes"} and anno["text"]
        assert all(s["label"] == "target" for s in anno["shapes"])
        assert Image.open(image).size == (256, 256)
    for family in ("semantic", "referring", "vqa", "absent", "present", "locate"):
        records = _read_jsonl(split / f"{family}.jsonl")
        assert records, family
        for r in records:
            assert (split / r["image"]).is_file()
            if family in ("vqa", "locate"):
                assert r["answer"] and r["targets"] == []
            elif family == "absent":  # a no-target record: no target, no answer
                assert r["targets"] == [] and "answer" not in r
            else:
                assert r["targets"] and "answer" not in r
            for t in r["targets"]:
                m = mask_utils.decode({"size": t["rle"]["size"], "counts": t["rle"]["counts"].encode()})
                assert m.shape == (256, 256) and m.sum() >= 20
    facts = _read_jsonl(train_root / "facts.jsonl")
    assert all(f["image"] == "blank.png" and f["answer"] and f["targets"] == [] for f in facts)
    assert any(f["answer"] == "A stop sign is an octagon." for f in facts)  # held out, still stated
    meta = json.loads((train_root / "meta" / "train.json").read_text())
    assert meta["counts"]["reasoning"] == 40


def test_reasoning_targets_match_the_segmentation_records(train_root: Path) -> None:
    """A reasoning polygon mask equals the union of some objects' exact RLE masks."""
    split = train_root / "train"
    objects_by_image: dict[str, list[np.ndarray]] = {}
    for r in _read_jsonl(split / "semantic.jsonl") + _read_jsonl(split / "referring.jsonl"):
        for t in r["targets"]:
            m = mask_utils.decode({"size": t["rle"]["size"], "counts": t["rle"]["counts"].encode()})
            objects_by_image.setdefault(r["image"], []).append(m.astype(bool))
    matched = 0
    for path in sorted(split.glob("train_*.json")):
        shapes = json.loads(path.read_text())["shapes"]
        target = rasterize_reason_seg(shapes, 256, 256).astype(bool)
        known = objects_by_image.get(path.stem + ".jpg", [])
        # Every known object mask lies fully inside or outside the target, or (when the
        # target is a part of a thing) holds all of it.
        for m in known:
            inside = (m & target).sum()
            assert inside in (0, m.sum()) or not (target & ~m).any(), path.name
        matched += any((m & target).any() for m in known)
    assert matched >= 10


def test_same_seed_same_bytes_and_splits_differ(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _generate(a, "val", 6, seed=3)
    _generate(b, "val", 6, seed=3)
    _generate(c, "test", 6, seed=3)
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert (a / "val" / "val_00000.jpg").read_bytes() != (c / "test" / "test_00000.jpg").read_bytes()


def test_absent_queries_name_nothing_in_their_scene(train_root: Path) -> None:
    """Every absent phrase ("the purple star") resolves to no object of its scene, and the
    loaders read the records as no-target queries (answer: there is no such object)."""
    from lisa.data.jsonl import NO_TARGET, read_records
    from lisa.data.shapes.generate import SPLIT_IDS, pick_reasoning
    from lisa.data.shapes.queries import Description, resolve

    records = _read_jsonl(train_root / "train" / "absent.jsonl")
    assert len(records) == 40 and len({r["image"] for r in records}) == 40
    for r in records[:10]:
        index = int(r["image"].removeprefix("train_").removesuffix(".jpg"))
        rng = np.random.default_rng([0, SPLIT_IDS["train"], index])
        scene = pick_reasoning(rng, 256, "train")[0]  # the scene as generated
        colour, kind = r["query"].removeprefix("the ").split(" ", 1)
        assert resolve(Description(kind, colour=colour), scene.objects) == [], r
    parsed = read_records(train_root / "train", names=["absent"])
    assert parsed and all(record.kind == NO_TARGET for record in parsed)


def test_present_queries_name_one_object_in_the_absent_form(train_root: Path) -> None:
    """Present phrases have the absent family's form ("the red heart") and name exactly one
    object of their scene, whose mask is the target; where the scene allows it, about half have
    a same-kind object of another colour beside them (the near misses absent queries are made of)."""
    from lisa.data.shapes.queries import Description, resolve
    from lisa.data.shapes.redraw import redraw_scene

    records = _read_jsonl(train_root / "train" / "present.jsonl")
    absent = {(r["image"], r["query"]) for r in _read_jsonl(train_root / "train" / "absent.jsonl")}
    assert len(records) >= 30 and len({r["image"] for r in records}) == len(records)
    contrasted, could_be = 0, 0
    for r in records:
        index = int(r["image"].removeprefix("train_").removesuffix(".jpg"))
        scene = redraw_scene("train", index)[0]
        colour, kind = r["query"].removeprefix("the ").split(" ", 1)
        hits = resolve(Description(kind, colour=colour), scene.objects)
        assert len(hits) == 1 and not scene.objects[hits[0]].is_thing, r
        assert (r["image"], r["query"]) not in absent
        (target,) = r["targets"]
        mask = mask_utils.decode({"size": target["rle"]["size"], "counts": target["rle"]["counts"].encode()})
        assert np.array_equal(mask.astype(bool), scene.target_mask([(hits[0], None)]).astype(bool)), r
        contrasted += any(o.kind == kind and o.colour != colour for o in scene.objects)
        could_be += any(len(resolve(Description(o.kind, colour=o.colour), scene.objects)) == 1 and any(
            p.kind == o.kind and p.colour != o.colour for p in scene.objects) for o in scene.objects if not o.is_thing)
    assert 0.3 * could_be <= contrasted <= could_be < len(records)


def test_adding_the_absent_family_leaves_earlier_files_unchanged(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The absent family draws from its own stream: data generated before it existed (and the
    models trained on it) stay reproducible byte for byte."""
    from lisa.data.shapes import generate

    _generate(tmp_path / "with", "val", 5)
    monkeypatch.setattr(generate, "absent_queries", lambda rng, scene, limit: [])
    _generate(tmp_path / "without", "val", 5)
    for path in sorted((tmp_path / "without" / "val").iterdir()):
        if path.name == "absent.jsonl":
            continue
        assert path.read_bytes() == (tmp_path / "with" / "val" / path.name).read_bytes(), path.name
    assert _read_jsonl(tmp_path / "with" / "val" / "absent.jsonl")


def test_adding_the_locate_family_leaves_earlier_files_unchanged(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Locate questions are derived from the referring queries without drawing from any RNG, so
    every other file is what it was before the family existed."""
    from lisa.data.shapes import generate

    _generate(tmp_path / "with", "val", 5)
    monkeypatch.setattr(generate, "locate_queries", lambda scene, referring: [])
    _generate(tmp_path / "without", "val", 5)
    for path in sorted((tmp_path / "without" / "val").iterdir()):
        if path.name == "locate.jsonl":
            continue
        assert path.read_bytes() == (tmp_path / "with" / "val" / path.name).read_bytes(), path.name
    located = _read_jsonl(tmp_path / "with" / "val" / "locate.jsonl")
    referring = _read_jsonl(tmp_path / "with" / "val" / "referring.jsonl")
    assert located and {r["query"] for r in located} <= {f"Where is {r['query']}?" for r in referring} | {
        f"Where are {r['query']}?" for r in referring}


# sha256 over the JSON / JSONL files (path, then bytes, sorted) of `val --n 8 --seed 0`, written
# by the generator before explanatory/<split>-facts.json and present.jsonl existed (commit a130dd8).
VAL_8_TEXT_DIGEST = "2d2042685f91b810bbe19a3bce195041627db4373ee824e9b01423666484629b"
ADDED_LATER = ("val-facts.json", "present.jsonl")


def _earlier_files_digest(root: Path) -> str:
    """The digest of what the generator wrote before ADDED_LATER existed: those files skipped,
    and meta's count of present queries taken out again."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if not path.is_file() or path.suffix not in (".json", ".jsonl") or path.name in ADDED_LATER:
            continue
        data = path.read_bytes()
        if path.parent.name == "meta":
            meta = json.loads(data)
            meta["counts"].pop("present")
            data = (json.dumps(meta, sort_keys=True, indent=1) + "\n").encode()
        digest.update(str(path.relative_to(root)).encode())
        digest.update(data)
    return digest.hexdigest()


def test_files_added_later_leave_earlier_files_unchanged(tmp_path: Path) -> None:
    """explanatory/<split>-facts.json draws nothing from the scene's RNG and present.jsonl draws
    from its own stream: every other file is byte for byte what the generator wrote before they
    existed (data and models stay reproducible)."""
    _generate(tmp_path, "val", 8)
    assert _earlier_files_digest(tmp_path) == VAL_8_TEXT_DIGEST
    facts = json.loads((tmp_path / "explanatory" / "val-facts.json").read_text())
    plain = {e["image"]: e for e in json.loads((tmp_path / "explanatory" / "val.json").read_text())}
    assert facts
    for entry in facts:  # same images and queries; the same fact; then only what the fact picks
        assert entry["query"] == plain[entry["image"]]["query"]
        fact = plain[entry["image"]]["outputs"].split(" So ")[0]
        assert entry["outputs"].startswith(fact + " So the answer is ")


def test_fact_explanations_name_exactly_what_the_fact_picks() -> None:
    """The answer names the picked kinds ("every" for several of one kind), or the colour for a
    colour fact, and never a colour that only the image tells."""
    from lisa.data.shapes.facts import CONCEPTS
    from lisa.data.shapes.generate import SPLIT_IDS, pick_reasoning
    from lisa.data.shapes.objects import COLOURS
    from lisa.data.shapes.reasoning import concept_query, picked_phrase

    checked = 0
    for index in range(60):
        rng = np.random.default_rng([7, SPLIT_IDS["train"], index])
        scene, _, _ = pick_reasoning(rng, 256, "train")
        for concept in CONCEPTS:
            targets = concept.resolve(scene.objects)
            if not targets:
                assert concept_query(rng, scene, concept).fact_answer is None
                continue
            phrase = picked_phrase(scene, concept, targets)
            kinds = [scene.objects[i].kind for i, _ in targets]
            if concept.family == "colour":
                assert phrase == f"the {concept.selector.colour} shape" + ("s" if len(kinds) > 1 else "")
                continue
            if concept.family == "part":  # part names may hold a colour word ("red light")
                assert phrase.startswith(f"the {concept.selector.part} of ") and phrase.endswith(kinds[0])
            else:
                assert not any(colour in phrase.split() for colour in COLOURS), phrase
                expected = {("every " if kinds.count(k) > 1 else "the ") + k for k in kinds}
                assert set(phrase.split(" and ")) == expected, phrase
            query = concept_query(rng, scene, concept)
            assert query.fact_answer == f"{concept.reason} So the answer is {phrase}."
            checked += 1
    assert checked > 200


def test_train_never_mentions_held_out_concepts(train_root: Path) -> None:
    for text in _all_texts(train_root, "train"):
        leaks = [c.key for c in HELD_OUT if c.mentions(text)]
        assert not leaks, (text, leaks)


def test_test_split_reasoning_uses_held_out_concepts(tmp_path: Path) -> None:
    _generate(tmp_path, "test", 15, seed=1)
    rule_words = ("largest", "biggest", "smallest", "most", "left")
    for path in sorted((tmp_path / "test").glob("test_*.json")):
        text = json.loads(path.read_text())["text"][0]
        assert any(c.mentions(text) for c in HELD_OUT) or any(w in text for w in rule_words), text


def test_smaller_rerun_leaves_no_stale_scenes(tmp_path: Path) -> None:
    _generate(tmp_path, "val", 4, 0, 128)
    with pytest.raises(LisaError, match="--overwrite"):  # an existing split is not replaced silently
        _generate(tmp_path, "val", 2, 0, 128)
    _generate(tmp_path, "val", 2, 0, 128, "--overwrite")
    assert len(list((tmp_path / "val").glob("*.jpg"))) == 2


@pytest.mark.parametrize("flags", [["--split", "dev"], ["--n", "0"], ["--size", "32"]])
def test_bad_input_is_a_clear_error(tmp_path: Path, flags: list[str]) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    argv = ["shapes", "generate", "--out", str(tmp_path), "--split", "val"] + flags
    args = parser.parse_args(argv)
    with pytest.raises(LisaError):
        args.run(args)


def test_max_objects_makes_an_easier_world(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["shapes", "generate", "--out", str(tmp_path), "--split", "train", "--n", "30",
                              "--max-objects", "2"])
    assert args.run(args) == 0
    meta = json.loads((tmp_path / "meta" / "train.json").read_text())
    objects = {k: v for k, v in meta["counts"].items() if k.startswith("objects_")}
    assert set(objects) <= {"objects_1", "objects_2"} and sum(objects.values()) == 30
    assert meta["max_objects"] == 2
    bad = parser.parse_args(["shapes", "generate", "--out", str(tmp_path), "--split", "train", "--max-objects", "9"])
    with pytest.raises(LisaError, match="--max-objects"):
        bad.run(bad)


def test_redraw_target_equals_the_written_files(tmp_path: Path) -> None:
    """`redraw_target` gives exactly what `lisa shapes generate` wrote: the reasoning polygons of
    each scene and its referring records' masks (a silent drift would score the examples wrongly)."""
    from lisa.data.shapes.redraw import redraw_target

    assert _generate(tmp_path, "val", 4, 3) == 0
    split = tmp_path / "val"
    for index in range(4):
        shapes = json.loads((split / f"val_{index:05d}.json").read_text())["shapes"]
        assert np.array_equal(redraw_target("val", index, "reasoning", seed=3),
                              rasterize_reason_seg(shapes, 256, 256).astype(bool))
    referring = [("referring", r) for r in _read_jsonl(split / "referring.jsonl") if len(r["targets"]) == 1][:3]
    several = [("semantic", r) for r in _read_jsonl(split / "semantic.jsonl") if len(r["targets"]) > 1][:3]
    assert several, "no semantic record with several targets (their union) in 4 scenes"
    for family, r in referring + several:
        truth = np.any([mask_utils.decode({"size": t["rle"]["size"], "counts": t["rle"]["counts"].encode()})
                        for t in r["targets"]], axis=0)
        index = int(r["image"][4:9])
        assert np.array_equal(redraw_target("val", index, family, r["query"], seed=3), truth)
    with pytest.raises(LisaError, match="no referring query"):
        redraw_target("val", 0, "referring", "the flying teapot", seed=3)


def test_example_images_are_the_test_scenes_their_truth_names(tmp_path: Path) -> None:
    """examples/*.jpg are byte for byte the generator's test scenes named in examples.json, so the
    masks `redraw_target` gives are the true masks of those images."""
    from lisa.data.shapes.generate import scene_name

    examples = Path(__file__).resolve().parents[1] / "examples"
    for example in json.loads((examples / "examples.json").read_text()):
        truth = example["truth"]
        assert _generate(tmp_path / example["image"], truth["split"], truth["index"] + 1) == 0
        written = tmp_path / example["image"] / truth["split"] / f"{scene_name(truth['split'], truth['index'])}.jpg"
        assert written.read_bytes() == (examples / example["image"]).read_bytes(), example["image"]
