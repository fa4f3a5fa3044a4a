"""World knowledge: facts that link everyday things to the shapes world, and the split of
concepts into seen and held-out ones.

Each `Concept` is one fact ("A stop sign is an octagon.") with the query wordings that need it
("the shape of a stop sign") and a `Selector` saying which objects or parts of a scene it
picks. The text-only corpus (`corpus_records`) states every fact, held out or not; but a
held-out concept is never used by a segmentation query in the train or val split. Test
reasoning queries use only held-out concepts (plus fact-free rules), so a model can answer
them only by combining a fact it read as text with what it sees.

HELD-OUT CONCEPTS (test split only):
  shapes:  stop sign -> octagon, honeycomb cell -> hexagon, kite -> diamond,
           crescent moon -> crescent, sheriff's badge -> star, egg -> oval, first-aid sign -> cross
  colours: ripe banana -> yellow, fire truck -> red, eggplant -> purple, elephant -> grey,
           frog -> green, pumpkin -> orange, blueberry -> blue, crow -> black
  uses:    umbrella (keeps you dry in the rain), traffic light (tells drivers when to stop),
           boat (carries you across water)
  parts:   window (lets light into a house), trunk (the woody part of a tree),
           red light (tells cars to stop), sail (catches the wind)
  sides:   one fewer side than a square -> triangle, twice as many sides as a square -> octagon,
           one fewer side than a hexagon -> pentagon
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lisa.data.shapes.geometry import SIDES
from lisa.data.shapes.objects import PART_NAMES, SceneObject
from lisa.data.shapes.scene import ObjectSpec, Target

SPLITS = ("train", "val", "test")


def article(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def plural(word: str) -> str:
    return word + ("es" if word.endswith(("s", "x", "ch", "sh")) else "s")


@dataclass(frozen=True)
class Selector:
    """Which objects a concept picks: kind in ``kinds`` (any if empty), colour (simple shapes
    only), and optionally one part of each picked thing."""

    kinds: tuple[str, ...] = ()
    colour: str | None = None
    part: str | None = None

    def picks(self, obj: SceneObject) -> bool:
        if self.kinds and obj.kind not in self.kinds:
            return False
        if self.colour is not None and (obj.is_thing or obj.colour != self.colour):
            return False
        return self.part is None or obj.part(self.part) is not None


@dataclass(frozen=True)
class Concept:
    key: str
    family: str  # "shape" | "colour" | "use" | "part" | "sides"
    keywords: tuple[str, ...]  # words that give the concept away (held-out leak check)
    phrases: tuple[str, ...]  # short queries, is_sentence = False
    sentences: tuple[str, ...]  # long queries, is_sentence = True
    qa: tuple[tuple[str, str], ...]  # text-only (question, answer) pairs for the corpus
    reason: str  # the fact, first sentence of explanatory answers
    selector: Selector
    held_out: bool = False

    def resolve(self, objects: list[SceneObject]) -> list[Target]:
        """Every object (or part) in the scene that the query refers to, back to front."""
        return [(i, self.selector.part) for i, o in enumerate(objects) if self.selector.picks(o)]

    def plant(self) -> ObjectSpec:
        """An object whose presence makes this concept's query have a target."""
        return ObjectSpec(kind=self.selector.kinds[0] if self.selector.kinds else None,
                          colour=self.selector.colour)

    def mentions(self, text: str) -> bool:
        return any(re.search(rf"\b{re.escape(k)}\b", text, re.IGNORECASE) for k in self.keywords)


def _shape(thing: str, kind: str, held_out: bool, keyword: str) -> Concept:
    a_thing, a_kind = article(thing), article(kind)
    return Concept(
        key=f"shape:{thing}", family="shape", keywords=(keyword,),
        phrases=(f"the shape of {a_thing}", f"something shaped like {a_thing}"),
        sentences=(f"Which object in this picture has the same shape as {a_thing}?",
                   f"I am looking for something shaped like {a_thing}. Can you find it?"),
        qa=((f"What shape is {a_thing}?", f"{a_thing.capitalize()} is {a_kind}."),
            (f"Which shape looks like {a_thing}?", f"{a_kind.capitalize()} looks like {a_thing}.")),
        reason=f"{a_thing.capitalize()} is {a_kind}.", selector=Selector(kinds=(kind,)),
        held_out=held_out)


def _colour(thing: str, colour: str, held_out: bool, keyword: str) -> Concept:
    a_thing = article(thing)
    return Concept(
        key=f"colour:{thing}", family="colour", keywords=(keyword,),
        phrases=(f"the shapes with the colour of {a_thing}", f"shapes coloured like {a_thing}"),
        sentences=(f"Which shapes in this picture have the same colour as {a_thing}?",
                   f"Show me every shape that is coloured like {a_thing}."),
        qa=((f"What colour is {a_thing}?", f"{a_thing.capitalize()} is {colour}."),),
        reason=f"{a_thing.capitalize()} is {colour}.", selector=Selector(colour=colour),
        held_out=held_out)


def _use(thing: str, does: str, phrase: str, sentence: str, held_out: bool,
         keyword: str) -> Concept:
    a_thing = article(thing)
    return Concept(
        key=f"use:{thing}", family="use", keywords=(keyword,),
        phrases=(phrase, f"the thing that {does}"),
        sentences=(sentence, f"Which object in this picture {does}?"),
        qa=((f"What {does}?", f"{a_thing.capitalize()} {does}."),
            (f"What is {a_thing} for?", f"{a_thing.capitalize()} {does}.")),
        reason=f"{a_thing.capitalize()} {does}.", selector=Selector(kinds=(thing,)),
        held_out=held_out)


def _part(thing: str, part: str, what: str, held_out: bool, keyword: str) -> Concept:
    assert part in PART_NAMES[thing], (thing, part)
    return Concept(
        key=f"part:{thing}:{part}", family="part", keywords=(keyword,),
        phrases=(f"the part of the {thing} that {what}",),
        sentences=(f"Which part of the {thing} in this picture {what}?",
                   f"Point out the part of the {thing} that {what}."),
        qa=((f"Which part of {article(thing)} is the one that {what}?",
             f"The {part} is the part of {article(thing)} that {what}."),),
        reason=f"The {part} is the part of {article(thing)} that {what}.",
        selector=Selector(kinds=(thing,), part=part), held_out=held_out)


def _sides(relation: str, base: str, kinds: tuple[str, ...], held_out: bool) -> Concept:
    n = SIDES[kinds[0]]
    names = " or ".join(article(k) for k in kinds)
    return Concept(
        key=f"sides:{relation} {base}", family="sides", keywords=(f"{relation} {article(base)}",),
        phrases=(f"the shape with {relation} {article(base)}",),
        sentences=(f"Find the shape in this picture that has {relation} {article(base)} has.",
                   f"Which shape here has {relation} {article(base)}?"),
        qa=((f"Which shape has {relation} {article(base)}?",
             f"{names.capitalize()} has {relation} {article(base)}: {article(base)} has "
             f"{SIDES[base]} sides and {article(kinds[0])} has {n}."),),
        reason=f"{names.capitalize()} has {relation} {article(base)}, because {article(base)} "
               f"has {SIDES[base]} sides and {article(kinds[0])} has {n}.",
        selector=Selector(kinds=kinds), held_out=held_out)


CONCEPTS: tuple[Concept, ...] = (
    _shape("stop sign", "octagon", True, "stop sign"),
    _shape("honeycomb cell", "hexagon", True, "honeycomb"),
    _shape("kite", "diamond", True, "kite"),
    _shape("crescent moon", "crescent", True, "moon"),
    _shape("sheriff's badge", "star", True, "badge"),
    _shape("egg", "oval", True, "egg"),
    _shape("first-aid sign", "cross", True, "first-aid"),
    _shape("slice of pizza", "triangle", False, "pizza"),
    _shape("coin", "circle", False, "coin"),
    _shape("pencil seen end-on", "hexagon", False, "pencil"),
    _shape("starfish", "star", False, "starfish"),
    _shape("valentine card", "heart", False, "valentine"),
    _shape("dice face", "square", False, "dice"),
    _shape("book cover", "rectangle", False, "book"),
    _shape("plus sign", "cross", False, "plus sign"),
    _shape("signpost pointing the way", "arrow", False, "signpost"),
    _shape("home plate in baseball", "pentagon", False, "home plate"),
    _shape("rugby ball", "oval", False, "rugby"),
    _shape("slice of melon", "crescent", False, "melon"),
    _shape("diamond on a playing card", "diamond", False, "playing card"),
    _colour("ripe banana", "yellow", True, "banana"),
    _colour("fire truck", "red", True, "fire truck"),
    _colour("eggplant", "purple", True, "eggplant"),
    _colour("elephant", "grey", True, "elephant"),
    _colour("frog", "green", True, "frog"),
    _colour("pumpkin", "orange", True, "pumpkin"),
    _colour("blueberry", "blue", True, "blueberry"),
    _colour("crow", "black", True, "crow"),
    _colour("lemon", "yellow", False, "lemon"),
    _colour("strawberry", "red", False, "strawberry"),
    _colour("lawn of grass", "green", False, "grass"),
    _colour("clear summer sky", "blue", False, "sky"),
    _colour("piece of coal", "black", False, "coal"),
    _colour("bar of chocolate", "brown", False, "chocolate"),
    _colour("carrot", "orange", False, "carrot"),
    _colour("bunch of grapes", "purple", False, "grapes"),
    _colour("flamingo", "pink", False, "flamingo"),
    _colour("storm cloud", "grey", False, "storm cloud"),
    _colour("tropical lagoon", "cyan", False, "lagoon"),
    _use("umbrella", "keeps you dry in the rain", "what would keep you dry in the rain",
         "Something in this picture could protect me from the rain. Which object is it?",
         True, "rain"),
    _use("traffic light", "tells drivers when to stop and when to go",
         "what tells drivers when to stop",
         "I am driving and need to know when to stop. What in this picture would tell me?",
         True, "drivers"),
    _use("boat", "carries people across the water", "what could carry me across a lake",
         "If I wanted to get across a lake, which object here would carry me?", True, "lake"),
    _use("house", "is a place where a family can live", "where a family could live",
         "A family needs somewhere to live. Which object in this picture could they live in?",
         False, "family"),
    _use("car", "takes people along the road", "what I could ride along the road in",
         "I need to get to town along the road quickly. What in this picture could take me?",
         False, "town"),
    _use("tree", "gives shade on a hot day", "where I could sit in the shade",
         "It is a hot day and I want to sit in the shade. Which object would give me shade?",
         False, "shade"),
    _use("sun", "lights up the day and keeps us warm", "what lights up the day",
         "What in this picture gives us daylight and warmth?", False, "daylight"),
    _use("flower", "is visited by bees for its nectar", "what a bee would visit for nectar",
         "A bee is looking for nectar. Which object in this picture would it fly to?",
         False, "nectar"),
    _part("house", "window", "lets light into the rooms", True, "lets light into"),
    _part("tree", "trunk", "is the woody stem holding it up", True, "woody"),
    _part("traffic light", "red light", "tells cars to stop", True, "stop"),
    _part("boat", "sail", "catches the wind", True, "wind"),
    _part("house", "door", "you walk through to get inside", False, "walk through"),
    _part("house", "roof", "covers the top of it", False, "covers the top"),
    _part("car", "wheels", "rolls along the road", False, "rolls along"),
    _part("tree", "crown", "holds the leaves", False, "leaves"),
    _part("umbrella", "handle", "you hold in your hand", False, "hold in your hand"),
    _part("traffic light", "green light", "tells cars they may go", False, "may go"),
    _part("flower", "petals", "forms the colourful ring around its centre", False, "colourful ring"),
    _part("sun", "rays", "points outwards from its disk", False, "points outwards"),
    _sides("one fewer side than", "square", ("triangle",), True),
    _sides("twice as many sides as", "square", ("octagon",), True),
    _sides("one fewer side than", "hexagon", ("pentagon",), True),
    _sides("one more side than", "square", ("pentagon",), False),
    _sides("one more side than", "pentagon", ("hexagon",), False),
    _sides("one more side than", "triangle", ("square", "rectangle", "diamond"), False),
    _sides("two more sides than", "hexagon", ("octagon",), False),
)

HELD_OUT: tuple[Concept, ...] = tuple(c for c in CONCEPTS if c.held_out)


def concepts_for(split: str) -> tuple[Concept, ...]:
    """Concepts that segmentation queries of ``split`` may use: held-out ones only in test."""
    return HELD_OUT if split == "test" else tuple(c for c in CONCEPTS if not c.held_out)


def basic_facts() -> list[tuple[str, str]]:
    """Facts about the world itself (sides, parts): stated for every split, never held out."""
    from lisa.data.shapes.objects import PART_NAMES as parts

    pairs = [(f"How many sides does {article(k)} have?", f"{article(k).capitalize()} has {n} sides.")
             for k, n in SIDES.items()]
    for thing, names in parts.items():
        listed = ", ".join(names[:-1]) + f" and {names[-1]}" if len(names) > 1 else names[0]
        pairs.append((f"What parts does {article(thing)} have?",
                      f"{article(thing).capitalize()} has these parts: {listed}."))
    return pairs


def corpus_records() -> list[dict[str, object]]:
    """The text-only corpus: every concept's Q/A pairs, its bare statement, and basic facts."""
    records: list[dict[str, object]] = []
    for question, answer in basic_facts():
        records.append({"image": "blank.png", "query": question, "answer": answer,
                        "is_sentence": True, "concept": "basic"})
    for concept in CONCEPTS:
        statement = concept.reason[0].lower() + concept.reason[1:-1]
        pairs = list(concept.qa) + [(f"Is it true that {statement}?", f"Yes. {concept.reason}")]
        for question, answer in pairs:
            records.append({"image": "blank.png", "query": question, "answer": answer,
                            "is_sentence": True, "concept": concept.key})
    return records
