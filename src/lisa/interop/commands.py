"""`lisa convert official|sam` and `lisa init`: checkpoints from elsewhere into lisa-seg folders."""

from __future__ import annotations

import argparse
from pathlib import Path

DTYPE_CHOICES = ("auto", "fp32", "bf16", "fp16")


def register(subparsers: argparse._SubParsersAction) -> None:
    convert = subparsers.add_parser(
        "convert", help="convert a released checkpoint to a lisa-seg folder",
        description="Convert checkpoints from elsewhere (docs/released-weights.md).",
        epilog="example:\n  lisa convert official --src LISA-7B-v1 --vision-tower clip-vit-large-patch14 --out lisa-7b-v1")
    kinds = convert.add_subparsers(dest="kind", required=True, metavar="KIND")
    official = kinds.add_parser(
        "official", help="a released LISA folder (xinlai/LISA-7B-v1, ...) + a CLIP folder",
        description="Stream a released LISA checkpoint shard by shard into a lisa-seg folder (safetensors, "
                    "lisa_config.json, tokenizer, CLIP image processor); needs about one shard of RAM. "
                    "`lisa fixtures official` writes tiny look-alikes to try it on.",
        epilog="example:\n  lisa convert official --src LISA-7B-v1 --vision-tower clip-vit-large-patch14 --out lisa-7b-v1")
    official.add_argument("--src", required=True, help="the released LISA folder")
    official.add_argument("--vision-tower", required=True, help="the openai/clip-vit-large-patch14 folder")
    official.add_argument("--out", required=True, help="a new folder for the lisa-seg model")
    official.add_argument("--dtype", choices=DTYPE_CHOICES, default="auto", help="auto keeps the checkpoint's (bf16)")
    official.add_argument("--no-progress", action="store_true",
                          help="no progress bar (it is shown on stderr only when that is a terminal)")
    official.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out folder whole")
    official.set_defaults(run=_run_convert_official)
    sam = kinds.add_parser(
        "sam", help="an original sam_vit_{h,l,b}_*.pth file -> a transformers SAM folder",
        description="Read an original SAM checkpoint (weights_only; the architecture is read from the tensor "
                    "shapes) and write a transformers SamModel folder.",
        epilog="example:\n  lisa convert sam --src sam_vit_h_4b8939.pth --out sam-vit-h")
    sam.add_argument("--src", required=True, help="the original sam_vit_*.pth file")
    sam.add_argument("--out", required=True, help="a new folder for the transformers SAM model")
    sam.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out folder whole")
    sam.set_defaults(run=_run_convert_sam)

    init = subparsers.add_parser(
        "init", help="a fresh LISA (new seg head) from a LLaVA folder and a SAM checkpoint",
        description="Build a training base: the LLaVA model gains [SEG] (when its tokenizer lacks it) and a "
                    "fresh seg head; SAM comes from an original .pth or a transformers folder.",
        epilog="example:\n  lisa init --vlm llava-1.5-7b-hf --sam sam_vit_h_4b8939.pth --out my-lisa")
    init.add_argument("--vlm", required=True, help="a llava-hf folder (LLaVA-1.5), a LLaVA-v1 folder, or a Hugging Face "
                      "Qwen2.5-VL / Qwen3-VL folder")
    init.add_argument("--sam", required=True, help="sam_vit_*.pth, or a transformers SAM, SAM 2 or SAM 3 tracker folder")
    init.add_argument("--vision-tower", default=None, help="CLIP folder (LLaVA-v1 folders only; they hold no CLIP)")
    init.add_argument("--out", required=True, help="a new folder for the model")
    init.add_argument("--seed", type=int, default=0, help="random seed of the new seg head and [SEG] row (default: 0)")
    init.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out folder whole")
    init.set_defaults(run=_run_init)

    fixtures = subparsers.add_parser(
        "fixtures", help="tiny look-alikes of released checkpoints, to try convert / init / segment",
        description="Write tiny random-weight checkpoints laid out like released ones.",
        epilog="example:\n  lisa fixtures official --out fixtures")
    fixture_kinds = fixtures.add_subparsers(dest="fixture_kind", required=True, metavar="KIND")
    fixture_official = fixture_kinds.add_parser(
        "official", help="LISA, CLIP, llava-hf, LLaVA-v1 and SAM look-alikes (a few MB, about 10 s)",
        description="Write OUT/LISA-tiny-v1 (xinlai/LISA-7B-v1's files: sharded pytorch_model-*.bin, config.json, "
                    "tokenizer.model with the added tokens), OUT/clip-vit-tiny (openai/clip-vit-large-patch14's), "
                    "OUT/llava-1.5-tiny-hf (llava-hf/llava-1.5-7b-hf's), OUT/LLaVA-tiny-v1 (LISA's own LLaVA-v1 "
                    "base) and OUT/sam_vit_tiny.pth (an original SAM checkpoint), with random weights, so that "
                    "the commands of docs/released-weights.md can be tried in a minute. Their answers are noise.",
        epilog="example:\n  lisa fixtures official --out fixtures\n"
               "  lisa convert official --src fixtures/LISA-tiny-v1 --vision-tower fixtures/clip-vit-tiny --out fixtures/converted")
    fixture_official.add_argument("--out", required=True, help="the folder to write (must be new or empty)")
    fixture_official.add_argument("--seed", type=int, default=0, help="random seed of the weights (default: 0)")
    fixture_official.set_defaults(run=_run_fixtures)


def _dtype(name: str):
    import torch

    return {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def _run_convert_official(args: argparse.Namespace) -> int:
    from lisa.interop.official import convert_official
    from lisa.output_dir import check_output_dir, staged_output_dir

    check_output_dir(Path(args.out), args.overwrite)
    with staged_output_dir(Path(args.out), args.overwrite) as stage:
        convert_official(args.src, args.vision_tower, stage, _dtype(args.dtype), progress=not args.no_progress)
    print(f"wrote {args.out}; use it with: lisa segment --model {args.out} ...")
    return 0


def _run_convert_sam(args: argparse.Namespace) -> int:
    from lisa.interop.sam_original import convert_sam
    from lisa.output_dir import check_output_dir, staged_output_dir

    check_output_dir(Path(args.out), args.overwrite)
    with staged_output_dir(Path(args.out), args.overwrite) as stage:
        convert_sam(args.src, stage)
    print(f"wrote {args.out}")
    return 0


def _run_fixtures(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lisa.errors import LisaError
    from lisa.interop.fixtures import write_fixtures

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise LisaError(f"{out} exists and is not an empty folder; choose a new one")
    fixtures = write_fixtures(out, seed=args.seed)
    print(f"wrote tiny released-layout checkpoints (random weights) to {out}/:")
    for label, path in (("LISA (released layout)", fixtures.lisa), ("CLIP", fixtures.clip),
                        ("llava-hf", fixtures.llava_hf), ("LLaVA-v1", fixtures.llava_v1), ("SAM .pth", fixtures.sam_pth)):
        print(f"  {label:24s} {path}")
    print(f"try: lisa convert official --src {fixtures.lisa} --vision-tower {fixtures.clip} --out {out}/converted")
    return 0


def _run_init(args: argparse.Namespace) -> int:
    from lisa.interop.llava_hf import init_lisa
    from lisa.output_dir import check_output_dir, staged_output_dir

    check_output_dir(Path(args.out), args.overwrite)
    with staged_output_dir(Path(args.out), args.overwrite) as stage:
        init_lisa(args.vlm, args.sam, stage, vision_tower=args.vision_tower, seed=args.seed)
    print(f"wrote {args.out} (new seg head; train it with `lisa train`)")
    return 0
