"""Training the text-prompt baseline: explicit queries only, frozen SAM image encoder.

Every image's SAM embedding is computed once and cached under ``run_dir/cache`` (the encoder is
frozen), so a step costs only the text encoder and the mask decoder. Batch ``step`` is a pure
function of (seed, step); checkpoints are atomic and resume exactly.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import PreTrainedTokenizerFast, SamModel

from lisa.baselines.text_encoder import TextEncoder, TextEncoderSize
from lisa.baselines.text_sam import QUERY_TEXTS, TextPromptSegmenter
from lisa.data import templates
from lisa.data.corpus import corpus_texts
from lisa.data.image_io import load_image
from lisa.data.images import image_size
from lisa.data.jsonl import SEG, Record, read_records, record_masks
from lisa.data.transforms import sam_resized_size, sam_view
from lisa.errors import LisaError
from lisa.model.losses import mask_bce_sum, mask_dice_sum
from lisa.model.sam import encode_images, upscale_masks
from lisa.model.weights import write_safetensors
from lisa.train.simple_loop import LoopSettings, check_new_or_resumed, run_loop
from lisa.schema import parse
from lisa.train.config import read_yaml


@dataclass
class BaselineConfig:
    run_dir: str
    data_dir: str  # the training split's folder of JSONL files, e.g. data/shapes/train
    sam: str  # stage-1 SAM folder (HF SamModel): image encoder frozen, mask decoder fine-tuned
    files: list[str] = field(default_factory=lambda: ["semantic", "referring"])  # JSONL stems: explicit only
    tokenizer_corpus: list[str] = field(default_factory=list)  # empty: the training files themselves
    query_text: str = "template"  # "template": LISA's question templates; "phrase": the bare record query
    text: TextEncoderSize = field(default_factory=TextEncoderSize)
    seed: int = 0
    lr: float = 5e-4
    warmup_steps: int = 100
    max_steps: int = 2000
    batch_size: int = 16
    clip: float = 1.0
    bce_weight: float = 2.0
    dice_weight: float = 0.5
    encode_batch: int = 16  # images per SAM encoder call when filling the cache
    save_every: int = 250
    keep_last: int = 2
    log_every: int = 25
    threads: int | None = 1

    def check(self) -> None:
        if self.query_text not in QUERY_TEXTS:
            raise LisaError(f"query_text must be one of {', '.join(QUERY_TEXTS)}, got {self.query_text!r}")
        if not (Path(self.sam) / "config.json").is_file():
            raise LisaError(f"SAM folder {self.sam} has no config.json; train stage 1 first "
                            "(configs/tiny-shapes/1-sam.yaml) or point `sam` at an HF SamModel folder")


def load_config(path: str | Path) -> BaselineConfig:
    return parse(BaselineConfig, read_yaml(path) or {}, path)


# ---- data ----------------------------------------------------------------------------------
@dataclass
class TrainSet:
    records: list[Record]  # segmentation records of the chosen files
    image_of: list[int]  # record -> row of ``embeddings``
    sizes: list[tuple[tuple[int, int], tuple[int, int]]]  # per image: (resized, original) size
    embeddings: torch.Tensor  # [images, C, h, w] frozen SAM image embeddings


def _fingerprint(sam_dir: Path, images: list[Path]) -> str:
    digest = hashlib.sha256()
    for weights in sorted(sam_dir.glob("*.safetensors")):
        digest.update(weights.read_bytes())
    digest.update((sam_dir / "config.json").read_bytes())
    digest.update("\n".join(str(p.resolve()) for p in images).encode())
    return digest.hexdigest()[:16]


def _encode_all(sam: SamModel, images: list[Path], chunk: int) -> torch.Tensor:
    size, parts = sam.config.vision_config.image_size, []
    with torch.no_grad():
        for start in range(0, len(images), chunk):
            pixels = torch.stack([sam_view(load_image(p), size).pixels for p in images[start:start + chunk]])
            parts.append(encode_images(sam, pixels).float())
            print(f"baseline: cached {min(start + chunk, len(images))}/{len(images)} image embeddings", flush=True)
    return torch.cat(parts)


def image_embeddings(sam: SamModel, sam_dir: Path, images: list[Path], cache_dir: Path, chunk: int) -> torch.Tensor:
    """[images, C, h, w], read from ``cache_dir`` when this SAM already encoded these images."""
    path = cache_dir / f"image-embeddings-{_fingerprint(sam_dir, images)}.safetensors"
    if path.is_file():
        return load_file(str(path))["embeddings"]
    embeddings = _encode_all(sam, images, chunk)
    cache_dir.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    write_safetensors({"embeddings": embeddings.contiguous()}, str(tmp))
    tmp.replace(path)
    return embeddings


def load_train_set(config: BaselineConfig, sam: SamModel) -> TrainSet:
    records = [r for r in read_records(Path(config.data_dir), names=config.files) if r.kind == SEG]
    if not records:
        raise LisaError(f"{config.data_dir}: no segmentation records in {', '.join(config.files)}")
    images = list(dict.fromkeys(r.image for r in records))
    row = {path: i for i, path in enumerate(images)}
    side = sam.config.vision_config.image_size
    sizes = []
    for path in images:
        height, width = image_size(path)
        sizes.append((sam_resized_size(height, width, side), (height, width)))
    cache = Path(config.run_dir) / "cache"
    embeddings = image_embeddings(sam, Path(config.sam), images, cache, config.encode_batch)
    return TrainSet(records, [row[r.image] for r in records], sizes, embeddings)


@dataclass
class Batch:
    texts: list[str]
    image_index: torch.Tensor  # [N] rows into ``images``
    images: torch.Tensor  # [n_images] rows of TrainSet.embeddings
    targets: list[torch.Tensor]  # N float masks [H, W] at the original size
    sizes: list[tuple[tuple[int, int], tuple[int, int]]]  # N (resized, original)


def query_text(record: Record, mode: str, rng: random.Random) -> str:
    return templates.question(record.query, record.is_sentence, rng) if mode == "template" else record.query


def make_batch(data: TrainSet, step: int, config: BaselineConfig) -> Batch:
    """Batch ``step`` is a pure function of (seed, step): resuming needs no data state."""
    rng = random.Random(f"{config.seed}-{step}")
    picks = [rng.randrange(len(data.records)) for _ in range(config.batch_size)]
    rows = list(dict.fromkeys(data.image_of[i] for i in picks))
    texts, targets, sizes = [], [], []
    for pick in picks:
        record, size = data.records[pick], data.sizes[data.image_of[pick]]
        texts.append(query_text(record, config.query_text, rng))
        union = record_masks(record, *size[1]).max(axis=0) == 1  # 255 (ignore) counts as background
        targets.append(torch.from_numpy(union).float())
        sizes.append(size)
    index = torch.tensor([rows.index(data.image_of[i]) for i in picks])
    return Batch(texts, index, torch.tensor(rows), targets, sizes)


# ---- loss ----------------------------------------------------------------------------------
def batch_loss(model: TextPromptSegmenter, data: TrainSet, batch: Batch, config: BaselineConfig
               ) -> tuple[torch.Tensor, dict[str, float]]:
    """LISA's mask loss: (bce_weight * BCE + dice_weight * DICE) per mask, averaged over masks."""
    low_res = model(data.embeddings[batch.images], batch.texts, batch.image_index)
    bce = dice = low_res.sum() * 0.0
    for logits, target, (resized, original) in zip(low_res, batch.targets, batch.sizes):
        full = upscale_masks(logits[None], model.image_size, resized, original)
        bce = bce + mask_bce_sum(full, target[None])
        dice = dice + mask_dice_sum(full, target[None])
    count = len(batch.targets)
    loss = (config.bce_weight * bce + config.dice_weight * dice) / count
    return loss, {"bce": float(bce.detach()) / count, "dice": float(dice.detach()) / count}


# ---- model and checkpoints -----------------------------------------------------------------
def build_model(config: BaselineConfig) -> TextPromptSegmenter:
    """Stage-1 SAM (only its mask decoder trains) plus a fresh text encoder and its tokenizer
    (trained once per run and kept in ``run_dir/tokenizer`` so that resuming reuses it)."""
    from lisa.model.build import build_tokenizer

    tokenizer_dir = Path(config.run_dir) / "tokenizer"
    if (tokenizer_dir / "tokenizer.json").is_file():
        tokenizer = PreTrainedTokenizerFast.from_pretrained(tokenizer_dir)
    else:
        corpus = [Path(p) for p in config.tokenizer_corpus] or [Path(config.data_dir) / f"{n}.jsonl" for n in config.files]
        tokenizer = build_tokenizer(corpus_texts(corpus), config.text.vocab_size)
        tokenizer.save_pretrained(tokenizer_dir)
    if len(tokenizer) > config.text.vocab_size:
        raise LisaError(f"the tokenizer has {len(tokenizer)} tokens but text.vocab_size is {config.text.vocab_size}")
    sam = SamModel.from_pretrained(config.sam)
    for name, parameter in sam.named_parameters():
        parameter.requires_grad_(name.startswith("mask_decoder."))
    torch.manual_seed(config.seed)
    encoder = TextEncoder(config.text, sam.config.mask_decoder_config.hidden_size)
    return TextPromptSegmenter(encoder, sam, tokenizer, config.query_text)


def train_baseline(config: BaselineConfig, resume: bool = False) -> Path:
    """Train (or resume) and write ``run_dir/model`` (a TextPromptSegmenter folder); returns it."""
    config.check()
    if config.threads:
        torch.set_num_threads(config.threads)
    run_dir = Path(config.run_dir)
    check_new_or_resumed(run_dir, resume)  # before the slow embedding cache
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))
    model = build_model(config)
    data = load_train_set(config, model.sam)
    settings = LoopSettings(config.lr, config.warmup_steps, config.max_steps, config.clip,
                            config.save_every, config.keep_last, config.log_every)
    step_loss = lambda step: batch_loss(model, data, make_batch(data, step, config), config)  # noqa: E731
    run_loop("baseline", run_dir, model, step_loss, settings, resume)
    return model.eval().save_pretrained(run_dir / "model")
