"""`lisa segment`, `lisa chat` and `lisa tiny-model`."""

from __future__ import annotations

import argparse
from pathlib import Path

from lisa.threads import add_threads_argument

COMMANDS_HELP = """commands:
  /reset        forget the conversation so far (same image)
  /image PATH   talk about another image (starts a new conversation)
  /save [DIR]   write transcript.json, transcript.txt and every turn's masks (default: the --out folder)
  /help         this list
  an empty line or Ctrl-D ends the chat"""


def register(subparsers: argparse._SubParsersAction) -> None:
    segment = subparsers.add_parser(
        "segment", help="segment an image from a free-form query",
        description="Answer a query about an image and write the mask of every [SEG] in the answer. A bare "
                    'phrase ("the blue circle") or question is sent in LISA\'s segmentation wording '
                    '("What is the blue circle in this image? Please output segmentation mask."); --raw sends '
                    "the text exactly as typed.",
        epilog='example:\n  lisa segment examples/diamond.jpg "the grey diamond" --out out/diamond',
    )
    segment.add_argument("image", type=Path, help="the image (PNG, JPEG, ...; EXIF rotation is applied)")
    segment.add_argument("query", help='what to find: a phrase ("the red star"), a question, or any instruction')
    segment.add_argument("--raw", action="store_true",
                         help="send the query exactly as typed, without adding the segmentation wording")
    _model_arguments(segment)
    segment.add_argument("--out", type=Path, default=Path("out"),
                         help="folder for mask_<i>.png, overlay.png and result.json (default: out)")
    segment.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out folder whole")
    segment.add_argument("--max-new-tokens", type=int, default=64, help="longest answer, in tokens (default: 64)")
    segment.set_defaults(run=run_segment)

    chat = subparsers.add_parser(
        "chat", help="multi-turn chat about one image in the terminal",
        description="Talk about an image; each turn's answer, masks and overlay are written to --out/turn_<i>/. "
                    "Text is sent as typed: to get a mask, ask for one (\"... Please output segmentation mask.\"). "
                    "When the conversation outgrows the model's context, the oldest turns are dropped.",
        epilog=COMMANDS_HELP + "\n\nexample:\n  lisa chat examples/umbrella.jpg --out out/chat",
    )
    chat.add_argument("image", type=Path, help="the image to talk about (/image PATH switches)")
    _model_arguments(chat)
    chat.add_argument("--out", type=Path, default=Path("out/chat"),
                      help="folder for each turn's outputs and /save (default: out/chat)")
    chat.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out folder whole")
    chat.add_argument("--max-new-tokens", type=int, default=64, help="longest answer, in tokens (default: 64)")
    chat.set_defaults(run=run_chat)

    tiny = subparsers.add_parser(
        "tiny-model", help="write a tiny random-weight model (for tests and trying the pipeline)",
        description="A few-MB model with random weights in the lisa-seg folder layout: it loads and runs "
                    "everywhere a model folder is accepted, and its answers are noise.",
        epilog="example:\n  lisa tiny-model --out /tmp/tiny && lisa segment --model /tmp/tiny examples/umbrella.jpg \"the umbrella\"",
    )
    tiny.add_argument("--out", type=Path, required=True, help="the folder to write (created if missing)")
    tiny.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out folder whole")
    tiny.add_argument("--seed", type=int, default=0, help="random seed of the weights (default: 0)")
    tiny.set_defaults(run=run_tiny_model)


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="lisa-tiny", help="model folder or shipped name (default: lisa-tiny)")
    parser.add_argument("--vision-tower", default=None,
                        help="CLIP folder, to load a released LISA checkpoint directly (see docs/released-weights.md)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, ... (default: auto)")
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16 (default: auto)")
    parser.add_argument("--quantize", type=int, choices=(8, 4), default=None,
                        help="load the LLM in 8 or 4 bits (bitsandbytes, CUDA only)")
    add_threads_argument(parser)


def check_generation_args(args: argparse.Namespace) -> None:
    """Refuse bad numbers before the model is loaded."""
    from lisa.errors import LisaError

    if args.max_new_tokens < 1:
        raise LisaError(f"--max-new-tokens must be at least 1, got {args.max_new_tokens}")


def check_query(query: str) -> None:
    from lisa.errors import LisaError

    if not query.strip():
        raise LisaError("the query is empty; ask something about the image, e.g. \"where is the dog?\"")
    if "\x00" in query:
        raise LisaError("the query contains a NUL character; pass plain text")


def _pipeline(args: argparse.Namespace):
    from lisa.inference.pipeline import LisaPipeline

    return LisaPipeline.from_pretrained(
        args.model, device=args.device, dtype=args.dtype, vision_tower=args.vision_tower, quantize=args.quantize,
        threads=args.threads,
    )


def run_segment(args: argparse.Namespace) -> int:
    from lisa.data.image_io import load_image
    from lisa.inference.queries import segment_query
    from lisa.inference.render import write_outputs
    from lisa.output_dir import check_output_dir, staged_output_dir

    check_query(args.query)
    check_generation_args(args)
    check_output_dir(args.out, args.overwrite)  # before the slow part
    image = load_image(args.image)
    pipe = _pipeline(args)
    result = pipe(image, args.query, max_new_tokens=args.max_new_tokens, raw=args.raw)
    prompt = args.query if args.raw else segment_query(args.query)
    with staged_output_dir(args.out, args.overwrite) as stage:
        written = write_outputs(stage, image, args.query, result.text, result.masks, result.scores, result.timings,
                                prompt=prompt, present=result.present)
    print(result.text)
    print(f"{len(result.masks)} mask(s){_empty_note(result.masks, result.present)} -> {args.out}/ "
          f"({', '.join(p.name for p in written)})")
    return 0


def _empty_note(masks, present=None) -> str:
    """' (1 empty)' when the decoder found nothing for some [SEG], ' (1 empty: judged absent)' when
    the presence head declined it: the files are still written."""
    declined = 0 if present is None else int((~present).sum())
    empty = sum(1 for mask in masks if not mask.any()) - declined
    notes = ([f"{empty} empty"] if empty else []) + ([f"{declined} empty: judged absent"] if declined else [])
    return f" ({', '.join(notes)})" if notes else ""


def run_chat(args: argparse.Namespace) -> int:
    from lisa.data.image_io import load_image
    from lisa.inference.chat import ChatSession
    from lisa.output_dir import check_output_dir, staged_output_dir

    check_generation_args(args)
    check_output_dir(args.out, args.overwrite)  # refused before the model loads
    load_image(args.image)  # a bad path fails before the model loads
    pipe = _pipeline(args)
    with staged_output_dir(args.out, args.overwrite):  # an empty folder now (with --overwrite: the old one replaced whole)
        pass
    session = ChatSession(pipe, args.image, args.out, args.max_new_tokens)
    session.greet()
    while True:
        try:
            line = input("you> ")
        except EOFError:
            break
        if not session.handle(line):
            break
    return 0


def run_tiny_model(args: argparse.Namespace) -> int:
    from lisa.model.build import write_tiny_model

    from lisa.output_dir import staged_output_dir

    with staged_output_dir(args.out, args.overwrite) as stage:
        write_tiny_model(stage, seed=args.seed)
    print(f"tiny random-weight model written to {args.out}")
    return 0
