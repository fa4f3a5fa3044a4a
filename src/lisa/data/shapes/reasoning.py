"""Reasoning queries: implicit descriptions that need a fact (`facts.py`) or a few steps.

A scene is sampled *for* a reasoning query: `plan` picks a concept allowed in the split and,
usually, an object to plant so that the concept has a target. The query's targets are then
whatever the concept's resolver finds in the finished scene (so one, several, or none), and
fact-free rules ("the largest object that is not red") add multi-step queries in every split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from lisa.data.shapes.facts import Concept, concepts_for
from lisa.data.shapes.geometry import SIDES
from lisa.data.shapes.queries import Query, bbox, name_of
from lisa.data.shapes.scene import ObjectSpec, Scene, Target

RULE_RATE = 0.15  # share of reasoning queries that use a fact-free rule
NO_TARGET_RATE = 0.12  # share that ask about a concept absent from the scene
MARGIN = 1.25  # "largest"/"smallest" only when the winner is clearly bigger/smaller


@dataclass
class Plan:
    concept: Concept | None  # None = use a rule
    planted: ObjectSpec | None  # object that makes the concept's query have a target


def plan(rng: np.random.Generator, split: str) -> Plan:
    r = rng.random()
    if r < RULE_RATE:
        return Plan(None, None)
    concepts = concepts_for(split)
    concept = concepts[int(rng.integers(len(concepts)))]
    wants_target = r >= RULE_RATE + NO_TARGET_RATE
    return Plan(concept, concept.plant() if wants_target else None)


def things_phrase(scene: Scene, targets: list[Target]) -> str:
    names = [f"the {name_of(scene.objects[i], part)}" for i, part in targets]
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"{joined} {'is' if len(names) == 1 else 'are'} the answer"


def picked_phrase(scene: Scene, concept: Concept, targets: list[Target]) -> str:
    """What the fact picks, named without anything else the model would have to read off the
    image: "the hexagon", "every hexagon", "the yellow shapes", "the window of the house"."""
    selector = concept.selector
    if selector.colour is not None:
        return f"the {selector.colour} shape" + ("s" if len(targets) > 1 else "")
    kinds = [scene.objects[i].kind for i, _ in targets]
    if selector.part is not None:
        return f"the {selector.part} of " + ("the " if len(targets) == 1 else "each ") + kinds[0]
    unique = list(dict.fromkeys(kinds))
    return " and ".join(("the " if kinds.count(k) == 1 else "every ") + k for k in unique)


def concept_query(rng: np.random.Generator, scene: Scene, concept: Concept) -> Query:
    targets = concept.resolve(scene.objects)
    is_sentence = bool(rng.random() < 0.5)
    texts = list(concept.sentences if is_sentence else concept.phrases)
    texts = [texts[int(k)] for k in rng.permutation(len(texts))]
    answer = f"{concept.reason} So {things_phrase(scene, targets)}." if targets else None
    fact_answer = f"{concept.reason} So the answer is {picked_phrase(scene, concept, targets)}." if targets else None
    return Query("reasoning", texts, targets, answer, is_sentence, concept.key, fact_answer)


# --- fact-free rules --------------------------------------------------------------------------


def _extreme(scores: dict[int, float], largest: bool) -> int | None:
    """Index with the clearly largest (or smallest) score, or None if it is not clear."""
    if not scores:
        return None
    order = sorted(scores, key=lambda i: scores[i], reverse=largest)
    if len(order) == 1:
        return order[0]
    best, second = scores[order[0]], scores[order[1]]
    clear = best >= MARGIN * second if largest else best * MARGIN <= second
    return order[0] if clear else None


def _rule(rng: np.random.Generator, phrase: str, sentence: str, target: int | None,
          reason: str, key: str) -> Query | None:
    if target is None:
        return None
    is_sentence = bool(rng.random() < 0.5)
    return Query("reasoning", [sentence if is_sentence else phrase], [(target, None)],
                 reason, is_sentence, key)


def largest_not(rng: np.random.Generator, scene: Scene) -> Query | None:
    colour = scene.objects[int(rng.integers(len(scene.objects)))].colour
    scores = {i: float(scene.area(i)) for i, o in enumerate(scene.objects) if o.colour != colour}
    phrase = f"the largest object that is not {colour}"
    sentence = f"Among the objects that are not {colour}, which one is the biggest?"
    if not scores:  # everything is that colour: a no-target query
        is_sentence = bool(rng.random() < 0.5)
        return Query("reasoning", [sentence if is_sentence else phrase], [], None, is_sentence,
                     "rule:largest-not")
    best = _extreme(scores, largest=True)
    reason = "" if best is None else (
        f"Among the objects that are not {colour}, the {name_of(scene.objects[best])} "
        "covers the most area. So it is the answer.")
    return _rule(rng, phrase, sentence, best, reason, "rule:largest-not")


def smallest_shape(rng: np.random.Generator, scene: Scene) -> Query | None:
    scores = {i: float(scene.area(i)) for i, o in enumerate(scene.objects) if not o.is_thing}
    best = _extreme(scores, largest=False)
    reason = "" if best is None else (
        f"The {name_of(scene.objects[best])} is smaller than every other shape. So it is the answer.")
    return _rule(rng, "the smallest shape", "Which shape in this picture is the smallest one?",
                 best, reason, "rule:smallest")


def most_sides(rng: np.random.Generator, scene: Scene) -> Query | None:
    sides = {i: float(SIDES[o.kind]) for i, o in enumerate(scene.objects) if o.kind in SIDES}
    best = _extreme(sides, largest=True) if len(sides) > 1 else None
    reason = "" if best is None else (
        f"The {name_of(scene.objects[best])} has {int(sides[best])} sides, more than any other "
        "shape with straight sides. So it is the answer.")
    return _rule(rng, "the shape with the most sides",
                 "Which shape here has more straight sides than any other shape?", best, reason,
                 "rule:most-sides")


def leftmost(rng: np.random.Generator, scene: Scene) -> Query | None:
    # Distance of each box's left edge from the image's right edge, so "largest" = leftmost.
    lefts = {i: float(scene.size - bbox(o)[0]) for i, o in enumerate(scene.objects)}
    order = sorted(lefts, key=lambda i: lefts[i], reverse=True)
    clear = len(order) > 1 and lefts[order[0]] - lefts[order[1]] >= 8
    best = order[0] if clear else None
    reason = "" if best is None else (
        f"The {name_of(scene.objects[best])} is closer to the left edge than any other object. "
        "So it is the answer.")
    return _rule(rng, "the object furthest to the left",
                 "Which object in this picture is the furthest to the left?", best, reason,
                 "rule:leftmost")


RULES: tuple[Callable[[np.random.Generator, Scene], Query | None], ...] = (
    largest_not, smallest_shape, most_sides, leftmost)


# --- choosing the scene's reasoning query -----------------------------------------------------


def candidates(rng: np.random.Generator, scene: Scene, split: str, chosen: Plan) -> list[Query]:
    """Reasoning queries for the scene, preferred first: the planned one, then others with a
    target, then no-target ones. The writer keeps the first whose mask polygons are exact."""
    out: list[Query] = []
    if chosen.concept is None:
        for k in rng.permutation(len(RULES)):
            q = RULES[int(k)](rng, scene)
            if q is not None:
                out.append(q)
    concepts = list(concepts_for(split))
    order = [concepts[int(k)] for k in rng.permutation(len(concepts))]
    if chosen.concept is not None:
        wanted_empty = chosen.planted is None
        first = [c for c in order if (not c.resolve(scene.objects)) == wanted_empty]
        if chosen.concept in first:
            first.remove(chosen.concept)
            first.insert(0, chosen.concept)
        order = first + [c for c in order if c not in first]
    else:
        order.sort(key=lambda c: not c.resolve(scene.objects))  # with targets first
    out.extend(concept_query(rng, scene, c) for c in order)
    return out
