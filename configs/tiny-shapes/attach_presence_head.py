"""Put one model's presence head (lisa.model.presence) on another model and save the result:

    python configs/tiny-shapes/attach_presence_head.py --head-from runs/lisa-tiny-v9/4-fitted/model \
        --model runs/lisa-tiny-v9/4-control-long/model --out runs/lisa-tiny-v9/4-headed/model

Every other weight, the tokenizer and the image processor are ``--model``'s, bit for bit. The head
keeps its weights, its feature standardisation and its threshold; on a model trained on from the
one it was fitted on it reads features that have drifted, so set its threshold again afterwards
(``fit_presence_head.py --calibrate``). This is what training on with the head in the model and
``presence_weight: 0`` would give (the head takes no part in the loss then), without the head's
construction drawing from the random stream that initialises the new LoRA.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import replace
from pathlib import Path

from lisa import LisaPipeline
from lisa.model.build import save_bundle
from lisa.model.presence import PresenceHead


def attach_head(donor: LisaPipeline, target: LisaPipeline) -> None:
    """Move ``donor``'s presence head onto ``target`` (in place), after checking that it reads
    what ``target``'s seg head computes."""
    head = donor.model.presence_head
    if head is None:
        raise SystemExit("--head-from has no presence head (presence_head_width in its lisa_config.json)")
    model = target.model
    if model.seg_head.image_attention is None:
        raise SystemExit("--model's seg head does not read the image tokens: a presence head cannot read it")
    expected = PresenceHead.reading(model.seg_head, model.config.hidden_size, donor.model.config.presence_head_width)
    if head.mean.shape != expected.mean.shape:
        raise SystemExit(f"the head reads {head.mean.shape[0]} features, --model's seg head computes "
                         f"{expected.mean.shape[0]}: the two models are not of one architecture")
    model.presence_head = head.to(model.device, model.dtype)
    model.config = replace(model.config, presence_head_width=donor.model.config.presence_head_width)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--head-from", required=True, help="a model with a presence head")
    parser.add_argument("--model", required=True, help="the model that gets the head")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    donor = LisaPipeline.from_pretrained(args.head_from, device="cpu", dtype="float32")
    target = LisaPipeline.from_pretrained(args.model, device="cpu", dtype="float32")
    attach_head(donor, target)
    if args.out.exists():
        shutil.rmtree(args.out)
    save_bundle(args.out, target.model, target.tokenizer, target.image_processor)
    print(f"{args.model} with the presence head of {args.head_from}: {args.out}")


if __name__ == "__main__":
    main()
