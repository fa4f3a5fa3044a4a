"""lisa-tiny: give the vision tower a sharper view of the scene, same token grid.

The shipped tower sees the 256-px scene resized to 128 px, in 16-px patches: an 8x8 grid of
image tokens, a shape of median size (38 px in the scene) about one patch across at 19 px. Its
tokens carry colour and place but hardly kind (docs/lisa-tiny-experiments.md sections 6 and 15),
and every query about "the grey diamond" needs kind. This script gives the tower the scene at
``--image-size`` (default 256: full resolution) with patches scaled by the same factor, so the
grid, the LM's sequence length and the dense prompt's map stay 8x8: each token now sees its cell
at full detail.

The new patch kernel is the old one repeated ``factor`` times along each side and divided by
``factor**2``: on an image ``factor`` times larger it computes what the old kernel computed on
the image box-downsampled by ``factor``. The image processor resized with bicubic interpolation,
not a box filter, so the outputs are close but not equal; stage 2a
(`train_vision_cells.py`) then trains the tower at the new view.

    python configs/tiny-shapes/sharpen_vision_view.py --model src/lisa/checkpoints/lisa-tiny \
        --out runs/v6/view256/model --image-size 256

Prints one JSON line: the old and new view, and how far the new tokens are from the old ones on
val scenes (relative RMS difference of the projected image tokens).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from train_vision_cells import save_with_base_files

from lisa.data.shapes.redraw import redraw_scene
from lisa.model.folder import load_preprocessing
from lisa.model.lisa import LisaModel
from lisa.model.vlms.base import VlmImages


def sharpened_kernel(kernel: torch.Tensor, factor: int) -> torch.Tensor:
    """A patch kernel [D, C, p, p] for an image ``factor`` times larger: each weight repeated over
    a factor x factor block, divided by its size, so it applies the old kernel to block means."""
    return kernel.repeat_interleave(factor, dim=2).repeat_interleave(factor, dim=3) / factor**2


@torch.no_grad()
def image_tokens(model: LisaModel, processor, images) -> torch.Tensor:
    pixels = model.adapter.image_inputs(images, processor).pixels
    return torch.stack(model.adapter.image_features(model.vlm, VlmImages(pixels)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a lisa-seg model folder with a CLIP-style tower")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args()
    model = LisaModel.from_pretrained(args.model)
    _, processor = load_preprocessing(args.model)
    tower = getattr(getattr(model.vlm, "model", None), "vision_tower", None)
    if type(tower).__name__ != "CLIPVisionModel":
        raise SystemExit(f"{args.model}: expected a Llava VLM with a CLIP vision tower, got {type(tower).__name__}")
    vision = model.vlm.config.vision_config  # the live module's config; the saved one is model.config.vlm
    old_size, old_patch = vision.image_size, vision.patch_size
    if args.image_size % old_size:
        raise SystemExit(f"--image-size must be a multiple of the tower's view ({old_size} px), got {args.image_size}")
    factor = args.image_size // old_size
    if dict(processor.size) != {"height": old_size, "width": old_size}:
        raise SystemExit(f"expected an image processor resizing to {old_size}x{old_size}, got {dict(processor.size)}")
    scenes = [redraw_scene("val", i, 0)[0].image for i in range(32)]
    before = image_tokens(model, processor, scenes)

    embedding = tower.embeddings
    kernel = sharpened_kernel(embedding.patch_embedding.weight.data, factor)
    conv = torch.nn.Conv2d(vision.num_channels, vision.hidden_size, kernel_size=old_patch * factor,
                           stride=old_patch * factor, bias=False)
    conv.weight.data.copy_(kernel)
    embedding.patch_embedding = conv
    embedding.patch_size = old_patch * factor
    embedding.image_size = args.image_size
    vision.image_size, vision.patch_size = args.image_size, old_patch * factor
    model.config.vlm["vision_config"].update(image_size=args.image_size, patch_size=old_patch * factor)
    processor.size = {"height": args.image_size, "width": args.image_size}

    after = image_tokens(model, processor, scenes)
    save_with_base_files(model, args.model, args.out)
    processor.save_pretrained(str(args.out))  # replaces the base's copy: the new view's size
    reloaded = LisaModel.from_pretrained(args.out)
    _, reloaded_processor = load_preprocessing(args.out)
    if not torch.equal(image_tokens(reloaded, reloaded_processor, scenes), after):
        raise SystemExit(f"{args.out}: the saved folder does not reproduce the sharpened tokens")
    change = float((after - before).pow(2).mean().sqrt() / before.pow(2).mean().sqrt())
    print(json.dumps({"view": [old_size, args.image_size], "patch": [old_patch, old_patch * factor],
                      "tokens": model.config.num_image_tokens, "relative_token_change": round(change, 4),
                      "out": str(args.out)}))


if __name__ == "__main__":
    main()
