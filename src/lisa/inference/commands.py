"""`lisa segment`, `lisa chat` and `lisa tiny-model`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    segment = subparsers.add_parser("segment", help="segment an image from a free-form query")
    segment.add_argument("image", type=Path)
    segment.add_argument("query")
    _model_arguments(segment)
    segment.add_argument("--out", type=Path, default=Path("out"), help="folder for masks, overlay, result.json")
    segment.add_argument("--max-new-tokens", type=int, default=64)
    segment.set_defaults(run=run_segment)

    chat = subparsers.add_parser("chat", help="multi-turn chat about one image in the terminal")
    chat.add_argument("image", type=Path)
    _model_arguments(chat)
    chat.add_argument("--out", type=Path, default=Path("out/chat"), help="folder for each turn's outputs")
    chat.add_argument("--max-new-tokens", type=int, default=64)
    chat.set_defaults(run=run_chat)

    tiny = subparsers.add_parser("tiny-model", help="write a tiny random-weight model (for tests and trying the pipeline)")
    tiny.add_argument("--out", type=Path, required=True)
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(run=run_tiny_model)


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="lisa-tiny", help="model folder or shipped name (default: lisa-tiny)")
    parser.add_argument("--vision-tower", default=None, help="CLIP folder, for a released LISA checkpoint")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ...")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16")
    parser.add_argument("--quantize", type=int, choices=(8, 4), default=None,
                        help="load the LLM in 8 or 4 bits (bitsandbytes, CUDA only)")


def _pipeline(args: argparse.Namespace):
    from lisa.inference.pipeline import LisaPipeline

    return LisaPipeline.from_pretrained(
        args.model, device=args.device, dtype=args.dtype, vision_tower=args.vision_tower, quantize=args.quantize
    )


def run_segment(args: argparse.Namespace) -> int:
    from lisa.data.image_io import load_image
    from lisa.inference.render import write_outputs

    image = load_image(args.image)
    pipe = _pipeline(args)
    result = pipe(image, args.query, max_new_tokens=args.max_new_tokens)
    written = write_outputs(args.out, image, args.query, result.text, result.masks, result.scores, result.timings)
    print(result.text)
    print(f"{len(result.masks)} mask(s){_empty_note(result.masks)} -> {args.out}/ ({', '.join(p.name for p in written)})")
    return 0


def _empty_note(masks) -> str:
    """' (1 empty)' when the decoder found nothing for some [SEG]: the files are still written."""
    empty = sum(1 for mask in masks if not mask.any())
    return f" ({empty} empty)" if empty else ""


def run_chat(args: argparse.Namespace) -> int:
    from lisa.data.image_io import load_image
    from lisa.errors import LisaError
    from lisa.inference.render import write_outputs

    image = load_image(args.image)
    pipe = _pipeline(args)
    history: list[tuple[str, str]] = []
    print("Ask about the image; an empty line or Ctrl-D ends the chat.")
    turn = 0
    while True:
        try:
            query = input("you> ").strip()
        except EOFError:
            break
        if not query:
            break
        try:
            result = pipe(image, query, history=history, max_new_tokens=args.max_new_tokens)
        except LisaError as error:
            print(f"error: {error}")
            continue
        out_dir = args.out / f"turn_{turn}"
        write_outputs(out_dir, image, query, result.text, result.masks, result.scores, result.timings)
        print(f"lisa> {result.text}")
        if len(result.masks):
            print(f"      {len(result.masks)} mask(s){_empty_note(result.masks)} -> {out_dir}/overlay.png")
        history.append((query, result.text))
        turn += 1
    return 0


def run_tiny_model(args: argparse.Namespace) -> int:
    from lisa.model.build import write_tiny_model

    write_tiny_model(args.out, seed=args.seed)
    print(f"tiny random-weight model written to {args.out}")
    return 0
