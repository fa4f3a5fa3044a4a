"""What a lisa-seg model folder must hold, checked before anything heavy is loaded, and its
tokenizer and image processor loaded with errors that name the folder and say what to do."""

from __future__ import annotations

from pathlib import Path

from lisa.errors import LisaError
from lisa.model.config import CONFIG_NAME, not_a_model_folder
from lisa.model.weights import weight_files

# One of these is the tokenizer (fast: tokenizer.json; sentencepiece: tokenizer.model; GPT-2 BPE: vocab.json).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")
PROCESSOR_NAME = "preprocessor_config.json"
REEXPORT = ("copy them from the model it was trained or converted from, or write the folder again "
            "(`lisa export`, `lisa convert`)")


def check_model_folder(directory: Path) -> None:
    """Config, weights, tokenizer and image processor are all there (else one LisaError)."""
    if not (directory / CONFIG_NAME).is_file():
        raise LisaError(not_a_model_folder(directory))
    weight_files(directory)
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        raise LisaError(f"{directory} has no tokenizer ({' or '.join(TOKENIZER_FILES)}): {REEXPORT}")
    if not (directory / PROCESSOR_NAME).is_file():
        raise LisaError(f"{directory} has no image processor ({PROCESSOR_NAME}): {REEXPORT}")


def load_preprocessing(directory: Path):
    """(tokenizer, image processor) of a model folder; the VLM's adapter picks the processor class."""
    from transformers import AutoTokenizer

    from lisa.model.config import LisaConfig
    from lisa.model.vlms import adapter_for

    check_model_folder(directory)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise LisaError(f"{directory}: its tokenizer files cannot be read ({_first_line(error)}): {REEXPORT}") from None
    try:
        processor = adapter_for(LisaConfig.load(directory).vlm).load_image_processor(directory)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise LisaError(f"{directory / PROCESSOR_NAME} cannot be read ({_first_line(error)}): {REEXPORT}") from None
    if LisaConfig.load(directory).seg_head_dense_prompt:
        check_dense_prompt_view(processor, directory)
    return tokenizer, processor


def check_dense_prompt_view(processor, directory: Path | None = None) -> None:
    """A seg head's dense prompt maps the VLM's token grid onto the whole image: the VLM's view
    must resize to a fixed height and width, neither cropping nor keeping the aspect ratio."""
    size = {key: value for key, value in dict(getattr(processor, "size", None) or {}).items() if value is not None}
    if getattr(processor, "do_center_crop", False) or not {"height", "width"} <= size.keys():
        where = f"{directory}: " if directory is not None else ""
        raise LisaError(f"{where}a seg head with a dense prompt needs an image processor that resizes the whole "
                        f"image to a fixed height and width without cropping (size {size}, do_center_crop "
                        f"{getattr(processor, 'do_center_crop', None)}): its token grid would not line up with the mask")


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
