"""Perception queries generated from a scene's objects: semantic, referring and VQA.

Every query is built from the objects it is about, and checked with a resolver (`resolve`)
that looks only at the scene: a referring phrase is kept only if it resolves to exactly its
target. Reasoning queries, which need world knowledge, live in `reasoning.py`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from lisa.data.shapes.facts import article, plural
from lisa.data.shapes.geometry import SHAPE_KINDS
from lisa.data.shapes.objects import COLOURS, THING_KINDS, SceneObject
from lisa.data.shapes.scene import Scene, Target


@dataclass
class Query:
    family: str  # "semantic" | "referring" | "absent" | "present" | "vqa" | "locate" | "reasoning"
    texts: list[str]  # wordings with the same targets; the first is the main one
    targets: list[Target] = field(default_factory=list)
    answer: str | None = None  # VQA answer or explanatory answer
    is_sentence: bool = False
    concept: str | None = None  # fact concept / rule key (reasoning), "group:colour" (referring)
    fact_answer: str | None = None  # reasoning with a fact: the fact, then only what it picks


def name_of(obj: SceneObject, part: str | None = None) -> str:
    """Short noun phrase: "red circle", "roof of the blue house"."""
    base = f"{obj.colour} {obj.kind}"
    return base if part is None else f"{part} of the {base}"


# --- referring expressions --------------------------------------------------------------------

RELATIONS = ("left of", "right of", "above", "below")


@dataclass(frozen=True)
class Description:
    """A referring phrase as data: attribute filters, an optional spatial relation to another
    described object, and an optional part."""

    kind: str
    colour: str | None = None
    size: str | None = None
    fill: str | None = None
    relation: str | None = None
    anchor: "Description | None" = None
    part: str | None = None

    def text(self) -> str:
        words = [w for w in (self.size, self.colour, self.fill, self.kind) if w]
        noun = "the " + " ".join(words)
        if self.relation and self.anchor:
            noun += f" {self.relation} {self.anchor.text()}"
        return f"the {self.part} of {noun}" if self.part else noun


def bbox(obj: SceneObject) -> tuple[float, float, float, float]:
    pts = np.concatenate([p for part in obj.parts for p in part.polygons])
    return pts[:, 0].min(), pts[:, 1].min(), pts[:, 0].max(), pts[:, 1].max()


def relates(a: SceneObject, relation: str, b: SceneObject) -> bool:
    """Strict spatial relations: the outlines' boxes do not overlap along that axis."""
    ax0, ay0, ax1, ay1 = bbox(a)
    bx0, by0, bx1, by1 = bbox(b)
    return {"left of": ax1 < bx0, "right of": ax0 > bx1, "above": ay1 < by0,
            "below": ay0 > by1}[relation]


def _attributes_match(d: Description, obj: SceneObject) -> bool:
    return (obj.kind == d.kind and d.colour in (None, obj.colour) and d.size in (None, obj.size)
            and d.fill in (None, obj.fill))


def resolve(d: Description, objects: list[SceneObject]) -> list[int]:
    """Indices of the objects a description refers to (before taking a part)."""
    hits = [i for i, o in enumerate(objects) if _attributes_match(d, o)]
    if d.relation and d.anchor:
        anchors = resolve(d.anchor, objects)
        if len(anchors) != 1:
            return []
        hits = [i for i in hits if i != anchors[0] and relates(objects[i], d.relation,
                                                                 objects[anchors[0]])]
    if d.part:
        hits = [i for i in hits if objects[i].part(d.part) is not None]
    return hits


def _attribute_sets(obj: SceneObject) -> list[dict[str, str]]:
    """Attribute combinations, shortest first (fill is only told for simple shapes)."""
    names = ["colour", "size"] + ([] if obj.is_thing else ["fill"])
    combos: list[dict[str, str]] = []
    for r in range(len(names) + 1):
        for chosen in itertools.combinations(names, r):
            combos.append({n: getattr(obj, n) for n in chosen})
    return combos


def describe(rng: np.random.Generator, objects: list[SceneObject], index: int,
             part: str | None = None, allow_relation: bool = True) -> Description | None:
    """A description that resolves to exactly ``index``; None if there is none.

    Usually the shortest one; sometimes a longer unique one or one with a spatial relation,
    so that every attribute word and relation appears in training text.
    """
    obj = objects[index]
    combos = _attribute_sets(obj)
    # Shuffle within each length so equally short phrasings are all used.
    combos.sort(key=lambda c: (len(c), float(rng.random())))
    unique = [d for d in (Description(obj.kind, part=part, **a) for a in combos)
              if resolve(d, objects) == [index]]
    if unique and (not allow_relation or rng.random() < 0.85):
        return unique[0] if rng.random() < 0.6 else unique[int(rng.integers(len(unique)))]
    if not allow_relation:
        return None
    for relation in rng.permutation(RELATIONS):
        for j in rng.permutation(len(objects)):
            if j == index or not relates(obj, str(relation), objects[j]):
                continue
            anchor = describe(rng, objects, int(j), allow_relation=False)
            for attrs in combos:
                if anchor is None:
                    break
                d = Description(obj.kind, relation=str(relation), anchor=anchor, part=part, **attrs)
                if resolve(d, objects) == [index]:
                    return d
    return unique[0] if unique else None


def referring_queries(rng: np.random.Generator, scene: Scene, limit: int) -> list[Query]:
    """Single-target phrases for objects and parts, plus "all red shapes"-style groups."""
    objects = scene.objects
    candidates: list[Target] = [(i, None) for i in range(len(objects))]
    candidates += [(i, p.name) for i, o in enumerate(objects) if o.is_thing for p in o.parts]
    queries: list[Query] = []
    for k in rng.permutation(len(candidates)):
        index, part = candidates[int(k)]
        d = describe(rng, objects, index, part)
        if d is not None:
            queries.append(Query("referring", [d.text()], [(index, part)]))
        if len(queries) >= limit:
            break
    group = _colour_group(rng, objects)
    if group is not None:
        queries.append(group)
    return queries


def _colour_group(rng: np.random.Generator, objects: list[SceneObject]) -> Query | None:
    """"all red shapes": every simple shape of one colour (a multi-target referring query)."""
    colours = sorted({o.colour for o in objects if not o.is_thing})
    if not colours:
        return None
    colour = str(rng.choice(colours))
    targets = [(i, None) for i, o in enumerate(objects) if not o.is_thing and o.colour == colour]
    wording = str(rng.choice(["all {} shapes", "every {} shape", "the {} shapes"]))
    return Query("referring", [wording.format(colour)], targets, concept="group:colour")


def absent_queries(rng: np.random.Generator, scene: Scene, limit: int) -> list[Query]:
    """Explicit phrases for simple shapes that are NOT in the scene ("the purple star"), with
    no target: they teach the model to decline. Mostly near misses (a kind that is there in
    another colour, or a colour that is there on another kind), otherwise any absent pair."""
    objects = scene.objects
    kinds_here = sorted({o.kind for o in objects if not o.is_thing})
    colours_here = sorted({o.colour for o in objects if not o.is_thing})
    queries: list[Query] = []
    for _ in range(20 * limit):  # a few tries per query; an absent pair almost always exists
        if len(queries) >= limit:
            break
        draw = rng.random()
        kind = str(rng.choice(kinds_here)) if kinds_here and draw < 0.4 else str(rng.choice(SHAPE_KINDS))
        colour = (str(rng.choice(colours_here)) if colours_here and 0.4 <= draw < 0.8
                  else str(rng.choice(list(COLOURS))))
        d = Description(kind, colour=colour)
        if not resolve(d, objects) and all(q.texts[0] != d.text() for q in queries):
            queries.append(Query("absent", [d.text()]))
    return queries


def present_queries(rng: np.random.Generator, scene: Scene, limit: int) -> list[Query]:
    """Phrases of the absent family's form ("the red heart") for simple shapes that ARE in the
    scene, each naming exactly one of them. Referring phrases rarely take this bare form, so
    without these it nearly always meant "decline" in training, and models declined present
    objects named that way. Where the scene has objects whose kind is also here in another
    colour, half are drawn from those: the near misses absent queries are made of, seen from
    the present side."""
    objects = scene.objects
    unique = [i for i, o in enumerate(objects)
              if not o.is_thing and resolve(Description(o.kind, colour=o.colour), objects) == [i]]
    contrasted = [i for i in unique
                  if any(p.kind == objects[i].kind and p.colour != objects[i].colour for p in objects)]
    queries: list[Query] = []
    while unique and len(queries) < limit:
        pool = contrasted if contrasted and rng.random() < 0.5 else unique
        index = pool[int(rng.integers(len(pool)))]
        obj = objects[index]
        queries.append(Query("present", [Description(obj.kind, colour=obj.colour).text()], [(index, None)]))
        unique = [i for i in unique if i != index]
        contrasted = [i for i in contrasted if i != index]
    return queries


# --- semantic ---------------------------------------------------------------------------------


def semantic_classes(objects: list[SceneObject]) -> dict[str, list[Target]]:
    """Class name -> every instance (shape kinds, things, and parts of things)."""
    classes: dict[str, list[Target]] = {}
    for i, obj in enumerate(objects):
        classes.setdefault(obj.kind, []).append((i, None))
        if obj.is_thing:
            for part in obj.parts:
                classes.setdefault(part.name, []).append((i, part.name))
    return classes


def semantic_queries(rng: np.random.Generator, scene: Scene, limit: int) -> list[Query]:
    classes = semantic_classes(scene.objects)
    names = sorted(classes)
    chosen = rng.permutation(len(names))[:limit]
    return [Query("semantic", [names[int(k)]], classes[names[int(k)]]) for k in chosen]


# --- VQA --------------------------------------------------------------------------------------


def count_answer(n: int, noun: str) -> str:
    if n == 0:
        return f"There are no {plural(noun)}."
    return f"There is 1 {noun}." if n == 1 else f"There are {n} {plural(noun)}."


def vqa_queries(rng: np.random.Generator, scene: Scene, limit: int) -> list[Query]:
    """Text-answer questions about counts, colours, shapes and presence."""
    makers = [_count_kind, _count_colour, _colour_of, _shape_of, _is_there]
    queries: list[Query] = []
    for k in rng.permutation(len(makers)):
        q = makers[int(k)](rng, scene.objects)
        if q is not None:
            queries.append(q)
        if len(queries) >= limit:
            break
    return queries


PLURAL_PARTS = ("walls", "petals")  # "the petals of the flower are"
LOCATE_GRID = 8  # cells per side: the vision tower's 8x8 tokens (128-px view, patch 16)


def grid_box(mask: np.ndarray, grid: int = LOCATE_GRID) -> tuple[int, int, int, int]:
    """The cells (x0, y0, x1, y1), inclusive, that a non-empty mask's bounding box touches on a
    ``grid`` x ``grid`` partition of the image."""
    ys, xs = np.nonzero(mask)
    height, width = mask.shape
    return (int(xs.min()) * grid // width, int(ys.min()) * grid // height,
            int(xs.max()) * grid // width, int(ys.max()) * grid // height)


def locate_queries(scene: Scene, referring: list[Query]) -> list[Query]:
    """"Where is the red circle?" answered with its box on the vision tower's grid, one per
    single-object referring query (not the colour groups): text that makes the LM say where an
    object is, so that the [SEG] state (read from the same LM) can carry the place as well as
    the attributes. Derived from the referring queries without drawing from any RNG."""
    queries: list[Query] = []
    for q in referring:
        if len(q.targets) != 1 or q.concept == "group:colour":  # a group is no one place, even of one
            continue
        x0, y0, x1, y1 = grid_box(scene.target_mask(q.targets))
        phrase, verb = q.texts[0], "are" if q.targets[0][1] in PLURAL_PARTS else "is"
        answer = f"{phrase[0].upper()}{phrase[1:]} {verb} at x {x0} to {x1}, y {y0} to {y1}."
        queries.append(Query("locate", [f"Where {verb} {phrase}?"], [], answer=answer, is_sentence=True))
    return queries


def _vqa(question: str, answer: str) -> Query:
    return Query("vqa", [question], [], answer=answer, is_sentence=True)


def _count_kind(rng: np.random.Generator, objects: list[SceneObject]) -> Query:
    present = sorted({o.kind for o in objects})
    kind = str(rng.choice(present if present and rng.random() < 0.85 else
                          list(SHAPE_KINDS + THING_KINDS)))
    n = sum(o.kind == kind for o in objects)
    return _vqa(f"How many {plural(kind)} are there?", count_answer(n, kind))


def _count_colour(rng: np.random.Generator, objects: list[SceneObject]) -> Query | None:
    colours = sorted({o.colour for o in objects if not o.is_thing})
    if not colours:
        return None
    colour = str(rng.choice(colours))
    n = sum(o.colour == colour and not o.is_thing for o in objects)
    return _vqa(f"How many {colour} shapes are there?", count_answer(n, f"{colour} shape"))


def _colour_of(rng: np.random.Generator, objects: list[SceneObject]) -> Query | None:
    kinds = [k for k in sorted({o.kind for o in objects}) if sum(o.kind == k for o in objects) == 1]
    if not kinds:
        return None
    kind = str(rng.choice(kinds))
    obj = next(o for o in objects if o.kind == kind)
    return _vqa(f"What colour is the {kind}?", f"The {kind} is {obj.colour}.")


def _shape_of(rng: np.random.Generator, objects: list[SceneObject]) -> Query | None:
    colours = [c for c in sorted({o.colour for o in objects})
               if sum(o.colour == c for o in objects) == 1]
    if not colours:
        return None
    colour = str(rng.choice(colours))
    obj = next(o for o in objects if o.colour == colour)
    return _vqa(f"What is the {colour} object?", f"The {colour} object is {article(obj.kind)}.")


def _is_there(rng: np.random.Generator, objects: list[SceneObject]) -> Query:
    shapes = [o for o in objects if not o.is_thing]
    if shapes and rng.random() < 0.5:
        obj = shapes[int(rng.integers(len(shapes)))]
        colour, kind = obj.colour, obj.kind
    else:
        colour, kind = str(rng.choice(list(COLOURS))), str(rng.choice(list(SHAPE_KINDS)))
    present = any(o.colour == colour and o.kind == kind for o in shapes)
    phrase = f"{colour} {kind}"
    answer = f"Yes, there is {article(phrase)}." if present else f"No, there is no {phrase}."
    return _vqa(f"Is there {article(phrase)} in the picture?", answer)
