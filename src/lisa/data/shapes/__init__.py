"""The synthetic shapes world: the data `lisa-tiny` is trained and evaluated on.

Scenes (default 256 px) hold 1-8 objects on pale plain, gradient or lightly noisy backgrounds:
14 shape kinds (circle, oval, triangle, square, rectangle, diamond, pentagon, hexagon, octagon,
star, heart, cross, crescent, arrow) in 11 colours, 3 size buckets and solid / striped / dotted
fills, plus 8 things made of named parts (house: walls/roof/door/window, tree: trunk/crown,
sun: rays/disk, car: body/window/wheels, umbrella: handle/canopy, traffic light: housing and
red/yellow/green light, flower: stem/petals/centre, boat: mast/sail/hull). Objects may overlap,
but each keeps >= 70 % of its area (and each part >= 60 %) visible. Everything is drawn with
OpenCV polygons into one label map, so instance and part masks are exact.

    lisa shapes generate --out DIR --split train|val|test [--n N] [--seed S] [--size 256]

writes, per split S:
  DIR/S/S_00000.jpg + .json     ReasonSeg layout: one reasoning query per image (targets as
                                labelme polygons that rasterise exactly; "shapes": [] = no target)
  DIR/S/semantic.jsonl          class names ("triangle", "roof") -> all instances (RLE targets)
  DIR/S/referring.jsonl         "the small blue square left of the star", "all red shapes"
  DIR/S/vqa.jsonl               counts, colours, yes/no, with text answers
  DIR/S/absent.jsonl            "the purple star" where there is none: no-target queries
  DIR/S/present.jsonl           "the red heart" where there is exactly one: the absent form for
                                present objects, so that the form alone never means "decline"
  DIR/S/locate.jsonl            "Where is the red circle?" -> "... is at x 2 to 3, y 5 to 6." (its
                                box on an 8x8 grid), one per single-object referring query
  DIR/explanatory/S.json        explanatory answers for the reasoning queries ("A coin is a
                                circle. So the red circle is the answer.")
  DIR/explanatory/S-facts.json  the same for queries that need a fact, naming only what the fact
                                picks ("A coin is a circle. So the answer is the circle."); no rules
  DIR/facts.jsonl, DIR/blank.png  text-only world-knowledge Q/A (all concepts)
  DIR/meta/S.json               counts per family, seed, held-out concepts

Modules: geometry (outlines), objects (colours, things and parts), scene (sampling, drawing,
masks), queries (semantic / referring / absent / present / VQA / locate), facts (concepts,
held-out split, corpus), reasoning (fact and rule queries), writer (file formats), generate
(one split), commands (CLI).
Held-out concepts are listed in `facts.py`: they appear in the text corpus and in test
reasoning queries only.
"""
