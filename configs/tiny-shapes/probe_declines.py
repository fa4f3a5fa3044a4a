"""Does a model decline because of the picture or because of the phrasing? From the `lisa eval`
reports of a split's absent.jsonl ("the purple star" where there is none) and present.jsonl (the
same bare form for a shape that is there):

    python configs/tiny-shapes/probe_declines.py --data-dir data/shapes-fresh --split test \
        --absent EVAL/4-reason-absent.json --present EVAL/4-reason-present.json

Each query is placed by what its scene holds (the scene is regenerated from the world's seed):
absent queries whose kind is there in another colour ("kind here"), whose colour is there on
another kind ("colour here"), or neither; present queries whose kind is also there in another
colour ("contrasted") or not ("alone"). A model that looks declines "neither" far more often than
any present query; one that reads only the phrasing declines every group alike.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from lisa.data.shapes.objects import SceneObject
from lisa.data.shapes.redraw import redraw_scene
from lisa.data.shapes.scene import MAX_OBJECTS


class Scenes:
    """The simple shapes of each scene of one split of a world, redrawn once per scene."""

    def __init__(self, data_dir: Path, split: str) -> None:
        self.meta = json.loads((data_dir / "meta" / f"{split}.json").read_text())
        self.split = split
        self.cache: dict[int, list[SceneObject]] = {}

    def objects(self, image: str) -> list[SceneObject]:
        index = int(Path(image).stem.rsplit("_", 1)[1])
        if index not in self.cache:
            scene = redraw_scene(self.split, index, self.meta["seed"], self.meta["size"],
                                 self.meta.get("max_objects", MAX_OBJECTS))[0]
            self.cache[index] = [o for o in scene.objects if not o.is_thing]
        return self.cache[index]


def colour_and_kind(query: str) -> tuple[str, str]:
    """"What is the red heart in this image? ..." -> ("red", "heart")."""
    phrase = query.removeprefix("What is ").split(" in this image?")[0].removeprefix("the ")
    colour, kind = phrase.split(" ", 1)
    return colour, kind


def group(family: str, colour: str, kind: str, objects: list[SceneObject]) -> str:
    if family == "present":
        return "contrasted" if any(o.kind == kind and o.colour != colour for o in objects) else "alone"
    if any(o.kind == kind for o in objects):
        return "kind here"
    return "colour here" if any(o.colour == colour for o in objects) else "neither"


def declines(report: dict, family: str, scenes: Scenes) -> dict[str, tuple[int, int]]:
    """group -> (declined, asked); declined = no mask (no [SEG], or an empty one)."""
    asked, declined = Counter(), Counter()
    for sample in report["per_sample"]:
        colour, kind = colour_and_kind(sample["query"])
        g = group(family, colour, kind, scenes.objects(sample["image"]))
        asked[g] += 1
        declined[g] += sample["predicted_area"] == 0
    return {g: (declined[g], asked[g]) for g in sorted(asked)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--absent", type=Path, required=True, help="lisa eval report of absent.jsonl")
    parser.add_argument("--present", type=Path, required=True, help="lisa eval report of present.jsonl")
    args = parser.parse_args()
    scenes = Scenes(args.data_dir, args.split)
    out = {}
    for family, path in (("absent", args.absent), ("present", args.present)):
        report = json.loads(path.read_text())
        out[family] = {g: f"{d}/{n} = {d / n:.2f}" for g, (d, n) in
                       declines(report, family, scenes).items()}
    print(json.dumps({"absent_report": str(args.absent), "present_report": str(args.present), "declined": out}))


if __name__ == "__main__":
    main()
