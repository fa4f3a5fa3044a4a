"""The model a run trains: loaded from a lisa-seg folder or built fresh (then saved to
``RUN/base`` so that resume and export find the same starting weights), with LoRA and the
trainable set of the official ``train_ds.py`` applied.
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import torch

from lisa.errors import LisaError
from lisa.model.lisa import LisaModel
from lisa.train.config import TrainConfig
from lisa.train.lora import add_lora
from lisa.train.trainable import set_trainable

BASE_SUBDIR = "base"


def base_dir(config: TrainConfig) -> Path:
    """The base model's folder: ``model.base`` as a path, else a shipped name (``lisa-tiny``, as
    ``lisa segment --model`` takes it); a built model lives in ``RUN/base``."""
    if config.model.base is not None:
        from lisa.inference.resolve import shipped_models_dir

        path = Path(config.model.base)
        shipped = shipped_models_dir() / config.model.base
        return shipped if not path.is_dir() and "/" not in config.model.base and shipped.is_dir() else path
    return Path(config.run_dir) / BASE_SUBDIR


def load_bundle(directory: Path):
    """(model, tokenizer, image processor) of a lisa-seg model folder, in training mode."""
    from lisa.model.folder import load_preprocessing

    if not directory.is_dir():
        raise LisaError(f"base model folder {directory} does not exist; set model.base to a lisa-seg model "
                        "folder or a shipped name (lisa-tiny); see `lisa convert` for released LISA / LLaVA + SAM weights")
    tokenizer, processor = load_preprocessing(directory)  # checks the whole folder first
    model = LisaModel.from_pretrained(directory, dtype=torch.float32, device="cpu")
    return model.train(), tokenizer, processor


def build_fresh(config: TrainConfig, corpus: list[str], directory: Path) -> None:
    """A random-init model of ``model.build`` size, its tokenizer trained on ``corpus``, saved."""
    from lisa.model.build import ModelSize, build_model, save_bundle

    known = {f.name for f in fields(ModelSize)}
    unknown = sorted(set(config.model.build or {}) - known)
    if unknown:
        raise LisaError(f"unknown config key model.build.{unknown[0]} (known: {', '.join(sorted(known))})")
    torch.manual_seed(config.seed)
    sam = load_sam(config.model.sam) if config.model.sam is not None else None
    if config.model.tokenizer_corpus:
        from lisa.data.corpus import corpus_texts

        corpus = corpus_texts([Path(d) for d in config.model.tokenizer_corpus])
    model, tokenizer, processor = build_model(ModelSize(**(config.model.build or {})), corpus, sam=sam)
    tmp = directory.with_name(directory.name + ".tmp")
    save_bundle(tmp, model, tokenizer, processor)
    tmp.replace(directory)


def load_sam(directory: str):
    """A trained SAM folder (e.g. stage 1 of a from-scratch model), or any registered mask
    backbone's Hugging Face folder (SAM 2)."""
    from lisa.model.mask_backbones import load_mask_model

    if not Path(directory).is_dir():
        raise LisaError(f"model.sam: {directory} is not a SAM folder (train stage 1 first)")
    return load_mask_model(directory)


def swap_sam(model: LisaModel, sam) -> None:
    """Put a trained SAM into a loaded model; a seg head of the wrong width is rebuilt (it is
    trained in the LISA stage anyway)."""
    from dataclasses import replace

    from lisa.model.mask_backbones import mask_backbone
    from lisa.model.seg_head import SegHead

    sam_dict = sam.config.to_dict()
    prompt_dim = type(mask_backbone(sam)).prompt_dim(sam_dict)
    model.sam = sam.to(model.dtype)
    model.config = replace(model.config, sam=sam_dict, out_dim=prompt_dim)
    if model.seg_head.fc2.out_features != prompt_dim:
        model.seg_head = SegHead(model.config.hidden_size, prompt_dim, model.config.seg_head_norm,
                                 model.config.seg_head_image_attention,
                                 model.config.seg_head_dense_prompt, model.config.seg_head_read,
                                 model.config.seg_head_embedding_read).to(model.dtype)


def rebuild_seg_head(model: LisaModel, norm: str, image_attention: bool = False, read: str = "image_tokens",
                     grid: int | None = None) -> None:
    """A fresh seg head with input norm ``norm`` and, if asked, a read of the image tokens or the
    mask embedding (pooled to ``grid`` a side; it trains in the LISA stage anyway)."""
    from dataclasses import replace

    from lisa.model.seg_head import SegHead

    check_read_grid(read, grid)
    head = SegHead(model.config.hidden_size, model.config.out_dim, norm, image_attention,
                   read=read)  # checks the names first
    model.config = replace(model.config, seg_head_norm=norm, seg_head_image_attention=image_attention,
                           seg_head_dense_prompt=False, seg_head_read=read, seg_head_read_grid=grid,
                           seg_head_embedding_read=False)
    model.seg_head = head.to(model.dtype)


def check_read_grid(read: str, grid: int | None) -> None:
    """A read grid pools the mask embedding: it does not apply to the VLM's tokens."""
    if grid is not None and read != "mask_embedding":
        raise LisaError(f"model.seg_head_read_grid pools the mask embedding; it does not apply to seg_head_read {read!r}")


def replace_image_read(model: LisaModel, read: str, grid: int | None = None) -> None:
    """Point the seg head's image read at ``read`` (SegHead's SEG_HEAD_READS): a fresh read whose
    output layer starts at zero, so that the sparse prompts start as the head's projection alone;
    the projection, the norm and a dense prompt's vector keep their trained weights. ``grid``: a
    read over the mask embedding sees it pooled to grid x grid cells (None: its own grid)."""
    from dataclasses import replace

    from lisa.model.seg_head import SegHead

    head = model.seg_head
    if head.image_attention is None:
        raise LisaError("model.seg_head_read needs a seg head that reads the image: set seg_head_image_attention")
    if head.embedding_attention is not None:
        raise LisaError("this seg head already reads the mask embedding beside the image tokens "
                        "(seg_head_embedding_read); its first read stays on the image tokens")
    check_read_grid(read, grid)
    fresh = SegHead(model.config.hidden_size, model.config.out_dim, image_attention=True, read=read)
    attention = fresh.image_attention
    assert attention is not None
    head.image_attention = attention.silence().to(device=head.fc1.weight.device, dtype=head.fc1.weight.dtype)
    head.read = read
    model.config = replace(model.config, seg_head_read=read, seg_head_read_grid=grid)


def add_dense_prompt(model: LisaModel, processor) -> None:
    """Give the seg head its dense prompt (SegHead.enable_dense_prompt), keeping its trained weights."""
    from dataclasses import replace

    from lisa.model.folder import check_dense_prompt_view

    check_dense_prompt_view(processor)
    model.seg_head.enable_dense_prompt()
    model.config = replace(model.config, seg_head_dense_prompt=True)


def add_embedding_read(model: LisaModel, grid: int | None = None) -> None:
    """Give the seg head its second read, over the mask embedding pooled to ``grid`` a side (None:
    its own grid), silent at first (SegHead.enable_embedding_read); the rest of the head is kept."""
    from dataclasses import replace

    model.seg_head.enable_embedding_read()
    model.config = replace(model.config, seg_head_embedding_read=True, seg_head_read_grid=grid)


def token_rows(model: LisaModel, config: TrainConfig) -> list[int] | None:
    """Embedding rows that train: None (all) or the tokens LISA adds ([SEG], <im_start>, <im_end>)."""
    if config.model.full_embeddings or config.recipe in ("vlm", "vlm_language"):
        return None
    ids = [model.config.seg_token_id, model.config.image_start_id, model.config.image_end_id]
    return sorted({i for i in ids if i is not None})


def prepare_model(config: TrainConfig, directory: Path):
    """Load the base, add LoRA, set the trainable parameters and gradient checkpointing."""
    model, tokenizer, processor = load_bundle(directory)
    if config.model.base is not None and config.model.sam is not None:
        torch.manual_seed(config.seed)  # the rebuilt seg head starts the same on resume and export
        swap_sam(model, load_sam(config.model.sam))
    if config.model.seg_head_read_grid is not None and config.model.seg_head_read is None and \
            not config.model.seg_head_embedding_read:
        raise LisaError("model.seg_head_read_grid needs model.seg_head_read: mask_embedding or "
                        "model.seg_head_embedding_read: true beside it")
    norm = config.model.seg_head_norm or model.config.seg_head_norm
    attention = config.model.seg_head_image_attention
    attention = model.config.seg_head_image_attention if attention is None else attention
    if (norm, attention) != (model.config.seg_head_norm, model.config.seg_head_image_attention):
        torch.manual_seed(config.seed)  # the new head starts the same on resume and export
        read = config.model.seg_head_read or model.config.seg_head_read
        grid = config.model.seg_head_read_grid if config.model.seg_head_read else model.config.seg_head_read_grid
        rebuild_seg_head(model, norm, attention, read, grid)
    elif config.model.seg_head_read is not None and (config.model.seg_head_read, config.model.seg_head_read_grid) != (
            model.config.seg_head_read, model.config.seg_head_read_grid):
        torch.manual_seed(config.seed)  # the new read starts the same on resume and export
        replace_image_read(model, config.model.seg_head_read, config.model.seg_head_read_grid)
    if config.model.seg_head_dense_prompt and not model.config.seg_head_dense_prompt:
        add_dense_prompt(model, processor)
    elif config.model.seg_head_dense_prompt is False and model.config.seg_head_dense_prompt:
        raise LisaError("model.seg_head_dense_prompt: false cannot remove the base's trained dense prompt; "
                        "rebuild the seg head (seg_head_norm / seg_head_image_attention) or leave it unset")
    if config.model.seg_head_embedding_read and not model.config.seg_head_embedding_read:
        torch.manual_seed(config.seed)  # the new read starts the same on resume and export
        add_embedding_read(model, config.model.seg_head_read_grid)
    elif config.model.seg_head_embedding_read is False and model.config.seg_head_embedding_read:
        raise LisaError("model.seg_head_embedding_read: false cannot remove the base's trained second read; "
                        "rebuild the seg head (seg_head_norm / seg_head_image_attention) or leave it unset")
    if config.lora is not None:
        add_lora(model, config.lora)
    set_trainable(model, token_rows(model, config), config.recipe)
    if config.model.gradient_checkpointing:
        model.adapter.language_model(model.vlm).activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
    return model, tokenizer, processor
