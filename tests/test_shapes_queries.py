"""Query resolvers on hand-built scenes: every query picks exactly the right objects."""

from __future__ import annotations

import re

import numpy as np

from lisa.data.shapes.facts import CONCEPTS, HELD_OUT, concepts_for
from lisa.data.shapes.objects import COLOURS, FILLS, SIZES, make_shape, make_thing
from lisa.data.shapes.queries import (Description, Query, absent_queries, describe, grid_box,
                                      locate_queries, referring_queries, resolve, semantic_classes,
                                      vqa_queries)
from lisa.data.shapes.reasoning import candidates, largest_not, most_sides, plan
from lisa.data.shapes.scene import render, sample_scene

SIZE = 256
BG = np.full((SIZE, SIZE, 3), 235, dtype=np.uint8)


def _scene():
    objects = [
        make_shape("square", "blue", "small", "solid", 30, 40, 15),  # 0
        make_shape("square", "blue", "large", "striped", 200, 40, 34),  # 1
        make_shape("star", "red", "medium", "solid", 110, 40, 25),  # 2
        make_shape("octagon", "yellow", "medium", "dotted", 40, 200, 25),  # 3
        make_shape("circle", "yellow", "small", "solid", 120, 140, 15),  # 4
        make_thing("umbrella", "red", "large", 200, 190, 45),  # 5
        make_thing("house", "yellow", "medium", 110, 210, 35),  # 6
    ]
    return render(objects, SIZE, BG)


def _concept(key: str):
    return next(c for c in CONCEPTS if c.key == key)


def test_descriptions_resolve_to_the_described_objects() -> None:
    objects = _scene().objects
    assert resolve(Description("square", colour="blue", size="small"), objects) == [0]
    assert resolve(Description("square", colour="blue"), objects) == [0, 1]
    assert resolve(Description("square", fill="striped"), objects) == [1]
    assert resolve(Description("square", relation="left of", anchor=Description("star")),
                   objects) == [0]
    assert resolve(Description("square", relation="right of", anchor=Description("star")),
                   objects) == [1]
    assert resolve(Description("house", part="roof"), objects) == [6]
    assert resolve(Description("circle", colour="red"), objects) == []
    assert Description("square", "blue", "small", relation="left of",
                       anchor=Description("star")).text() == "the small blue square left of the star"
    assert Description("house", part="roof").text() == "the roof of the house"


def test_describe_always_yields_a_phrase_unique_to_its_target() -> None:
    scene = _scene()
    rng = np.random.default_rng(0)
    for _ in range(5):
        for i in range(len(scene.objects)):
            d = describe(rng, scene.objects, i)
            assert d is not None and resolve(d, scene.objects) == [i], d
    for q in referring_queries(rng, scene, limit=20):
        if q.concept is None:
            (index, part), = q.targets
            text, obj = q.texts[0], scene.objects[index]
            head = re.split(r" (?:left of|right of|above|below) ", text)[0]  # before any relation
            assert head.endswith(obj.kind) and text.startswith("the ")
            if part is not None:
                assert text.startswith(f"the {part} of ")
            named = set(head.split()) & (set(COLOURS) | set(SIZES) | set(FILLS))
            assert named <= {obj.colour, obj.size, obj.fill}, (text, obj)
        else:  # "all blue shapes"
            colour = q.texts[0].split()[1]
            assert [i for i, _ in q.targets] == [
                i for i, o in enumerate(scene.objects) if o.colour == colour and not o.is_thing]


def test_absent_queries_name_shapes_that_are_not_there() -> None:
    scene = _scene()
    kinds_here = {o.kind for o in scene.objects if not o.is_thing}
    near_misses = 0
    for seed in range(20):
        queries = absent_queries(np.random.default_rng(seed), scene, 3)
        assert len(queries) == 3 and len({q.texts[0] for q in queries}) == 3
        for q in queries:
            assert q.family == "absent" and q.targets == []
            colour, kind = q.texts[0].removeprefix("the ").split(" ", 1)
            assert colour in COLOURS
            assert resolve(Description(kind, colour=colour), scene.objects) == []
            near_misses += kind in kinds_here
    assert near_misses >= 15  # mostly a kind that is there, in another colour


def test_semantic_classes_cover_kinds_and_parts() -> None:
    classes = semantic_classes(_scene().objects)
    assert classes["square"] == [(0, None), (1, None)]
    assert classes["roof"] == [(6, "roof")]
    assert classes["handle"] == [(5, "handle")]
    assert "triangle" not in classes


def test_concepts_resolve_from_facts() -> None:
    objects = _scene().objects
    assert _concept("shape:stop sign").resolve(objects) == [(3, None)]
    # Colour concepts pick simple shapes only: not the yellow house.
    assert _concept("colour:ripe banana").resolve(objects) == [(3, None), (4, None)]
    assert _concept("use:umbrella").resolve(objects) == [(5, None)]
    assert _concept("part:house:window").resolve(objects) == [(6, "window")]
    assert _concept("sides:one more side than triangle").resolve(objects) == [(0, None), (1, None)]
    assert _concept("shape:kite").resolve(objects) == []  # no diamond: a no-target query
    assert _concept("use:boat").resolve(objects) == []


def test_rules_find_the_right_object() -> None:
    scene = _scene()
    rng = np.random.default_rng(1)
    q = most_sides(rng, scene)
    assert q is not None and q.targets == [(3, None)] and "octagon" in q.answer
    for _ in range(10):
        q = largest_not(rng, scene)
        if q is None:
            continue
        colour = q.texts[0].split("not ")[1].split()[0].rstrip(",?")
        (index, _), = q.targets
        others = [i for i, o in enumerate(scene.objects) if o.colour != colour]
        assert scene.objects[index].colour != colour
        assert scene.area(index) == max(scene.area(i) for i in others)


def test_vqa_answers_match_the_scene() -> None:
    scene = _scene()
    rng = np.random.default_rng(2)
    for _ in range(20):
        for q in vqa_queries(rng, scene, limit=5):
            question, answer = q.texts[0], q.answer
            assert q.targets == [] and answer
            if question == "How many squares are there?":
                assert answer == "There are 2 squares."
            if question == "What colour is the star?":
                assert answer == "The star is red."
            if question == "Is there a yellow octagon in the picture?":
                assert answer.startswith("Yes")
            if question == "How many yellow shapes are there?":
                assert answer == "There are 2 yellow shapes."


def test_reasoning_queries_of_sampled_scenes_match_their_resolvers() -> None:
    for split in ("train", "test"):
        allowed = {c.key for c in concepts_for(split)}
        for k in range(12):
            rng = np.random.default_rng([9, k])
            chosen = plan(rng, split)
            scene = sample_scene(rng, SIZE, chosen.planted)
            for q in candidates(rng, scene, split, chosen)[:3]:
                assert q.concept.startswith("rule:") or q.concept in allowed
                if not q.concept.startswith("rule:"):
                    assert q.targets == _concept(q.concept).resolve(scene.objects)
                if q.targets:
                    assert q.answer and "answer" in q.answer


def test_held_out_concepts_are_split_and_never_leak_into_seen_wordings() -> None:
    seen = concepts_for("train")
    assert concepts_for("val") == seen
    assert set(concepts_for("test")) == set(HELD_OUT) and not set(seen) & set(HELD_OUT)
    assert {c.family for c in HELD_OUT} == {"shape", "colour", "use", "part", "sides"}
    for concept in seen:
        for text in concept.phrases + concept.sentences + (concept.reason,):
            leaks = [h.key for h in HELD_OUT if h.mentions(text)]
            assert not leaks, (concept.key, text, leaks)


def test_grid_box_names_the_cells_a_mask_touches() -> None:
    mask = np.zeros((256, 256), dtype=bool)
    mask[0:32, 40:101] = True  # x 40..100 -> cells 1..3 (32 px each); y 0..31 -> cell 0 only
    assert grid_box(mask) == (1, 0, 3, 0)
    tall = np.zeros((300, 150), dtype=bool)  # a non-square mask: cells are per axis
    tall[299, 149] = True
    assert grid_box(tall) == (7, 7, 7, 7)


def test_locate_answers_where_the_referred_object_is() -> None:
    scene = _scene()
    # The small yellow circle (object 4) covers x 105..135, y 125..155: cells 3..4 on both axes.
    # The umbrella (object 5) x 155..245, y 154..235: cells 4..7. Groups (even of one) are no single place.
    referring = [Query("referring", ["the small yellow circle"], [(4, None)]),
                 Query("referring", ["the red umbrella"], [(5, None)]),
                 Query("referring", ["all blue shapes"], [(0, None), (1, None)]),
                 Query("referring", ["all red shapes"], [(2, None)], concept="group:colour"),
                 Query("referring", ["the walls of the house"], [(6, "walls")])]
    located = locate_queries(scene, referring)
    assert [(q.texts, q.answer) for q in located] == [
        (["Where is the small yellow circle?"], "The small yellow circle is at x 3 to 4, y 3 to 4."),
        (["Where is the red umbrella?"], "The red umbrella is at x 4 to 7, y 4 to 7."),
        (["Where are the walls of the house?"], "The walls of the house are at x 2 to 4, y 6 to 7."),
    ]
    assert all(q.family == "locate" and q.targets == [] and q.is_sentence for q in located)
