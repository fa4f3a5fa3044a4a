"""Stage 1 of a from-scratch LISA: SAM trained as a promptable segmenter (points and boxes).

The paper starts from a SAM pre-trained on SA-1B; a from-scratch model (lisa-tiny) first learns
the same job on its own world: every instance and part mask of the JSONL folders, prompted by a
jittered box or by 1-3 positive points, predicting one mask (BCE + DICE at full resolution).
The LISA stage then freezes this image encoder and fine-tunes the mask decoder.

Single process on purpose (the model is small); checkpoints are atomic and resume exactly.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import SamConfig, SamModel

from lisa.data.image_io import load_image
from lisa.data.jsonl import Record, decode_target, read_records
from lisa.data.transforms import sam_view
from lisa.errors import LisaError
from lisa.model.build import SamSize, build_sam_config
from lisa.model.losses import mask_bce_sum, mask_dice_sum
from lisa.model.sam import decode_masks, encode_images, init_sam_from_scratch, upscale_masks
from lisa.schema import parse
from lisa.train.config import read_yaml
from lisa.train.model_setup import load_sam
from lisa.train.sam_regrid import regrid_sam
from lisa.train.dense_aux import UPSCALE, DenseHeads, dense_losses, to_head_grid
from lisa.train.simple_loop import LoopSettings, check_new_or_resumed, run_loop


@dataclass
class SamStageConfig:
    stage: str  # "sam": tells `lisa train` that this YAML is a SAM stage
    run_dir: str
    data_dir: str  # a folder of JSONL files (e.g. the shapes world's DIR/train)
    # Which *.jsonl files of data_dir and val_dir hold the instances (None: all of them). Naming
    # them keeps the instances, and so the trained SAM, the same when new files join the folder.
    names: list[str] | None = None
    size: SamSize = field(default_factory=SamSize)
    seed: int = 0
    lr: float = 1e-3
    warmup_steps: int = 200
    max_steps: int = 3000
    batch_size: int = 8
    clip: float = 1.0
    save_every: int = 200
    keep_last: int = 2
    log_every: int = 20
    threads: int | None = None
    # Every k-th batch prompts with the referring phrase instead of a box / points (0: never), so
    # that the image encoder must keep what words name (colour, kind), not only where edges are.
    phrase_every: int = 0
    # Weight of the dense auxiliary losses (lisa.train.dense_aux: per-class maps of the semantic
    # records and the colour image, from the embedding); 0: off.
    dense_weight: float = 0.0
    # Every k-th batch gives its boxes as ONE sparse token, the mean of the two corner tokens
    # (``box_token``), through the same decoder path as a [SEG] prompt (0: never). The decoder
    # then knows a single-token box, which a LISA stage can teach the seg head to emit
    # (``seg_warmup`` in the training config).
    box_token_every: int = 0
    # Start from this SAM folder instead of random weights (then ``size`` is the folder's own).
    init_sam: str | None = None
    # Re-grid the init_sam to this smaller patch (lisa.train.sam_regrid): a finer embedding and
    # mask grid (patch 8: 128x128 masks) warm-started from the coarse SAM. Needs init_sam.
    regrid_patch: int | None = None
    # The mask loss: bce_weight x pixel-mean BCE + dice_weight x (1 - Dice), per mask (LISA's 2 : 0.5).
    bce_weight: float = 2.0
    dice_weight: float = 0.5
    # After each checkpoint, box- and point-prompted mIoU on ``val_count`` instances of this
    # folder (e.g. DIR/val) are logged as val_box_miou / val_point_miou: the stage's curve.
    val_dir: str | None = None
    val_count: int = 200


def fresh_sam(config: SamConfig) -> SamModel:
    """A randomly initialised SAM for training from scratch (see ``init_sam_from_scratch``)."""
    return init_sam_from_scratch(SamModel(config))


class PhrasePrompter(nn.Module):
    """A bag of words -> one sparse prompt [B, prompt_dim]; only used to teach stage 1 semantics."""

    def __init__(self, vocabulary: list[str], prompt_dim: int) -> None:
        super().__init__()
        self.index = {word: i + 1 for i, word in enumerate(vocabulary)}  # 0: unknown word
        self.embed = nn.EmbeddingBag(len(vocabulary) + 1, prompt_dim, mode="mean")
        self.proj = nn.Linear(prompt_dim, prompt_dim)

    def forward(self, phrases: list[str]) -> torch.Tensor:
        ids = [torch.tensor([self.index.get(w, 0) for w in words(p)] or [0]) for p in phrases]
        offsets = torch.tensor([0] + [len(i) for i in ids[:-1]]).cumsum(0)
        return self.proj(self.embed(torch.cat(ids), offsets))


class SamStage(nn.Module):
    """What stage 1 trains: the SAM, the phrase prompter and the dense heads when they are on."""

    def __init__(self, sam: SamModel, prompter: PhrasePrompter | None, dense: DenseHeads | None = None) -> None:
        super().__init__()
        self.sam = sam
        self.prompter = prompter
        self.dense = dense


def words(phrase: str) -> list[str]:
    return phrase.lower().replace(",", " ").split()


# ---- data --------------------------------------------------------------------------------
@dataclass
class _Instance:
    record: Record
    target: int  # index into record.targets


def collect_instances(data_dir: Path, names: list[str] | None = None) -> list[_Instance]:
    """One entry per distinct (image, target) of every segmentation record (of the ``names``
    files only, when given)."""
    seen: set[tuple[str, str]] = set()
    instances = []
    for record in read_records(data_dir, None, names):
        for index, target in enumerate(record.targets):
            key = (str(record.image), json.dumps(target, sort_keys=True))
            if key not in seen:
                seen.add(key)
                instances.append(_Instance(record, index))
    if not instances:
        raise LisaError(f"{data_dir}: no segmentation targets found in its JSONL files")
    return instances


SemanticIndex = dict[str, list[tuple[str, Record]]]  # image path -> (class name, its record)


def semantic_index(data_dir: Path) -> SemanticIndex:
    """The semantic records of ``data_dir``, by image: what the dense semantic head learns."""
    index: SemanticIndex = {}
    for record in read_records(data_dir, None, ["semantic"]):
        index.setdefault(str(record.image), []).append((record.query, record))
    return index


def _semantic_labels(item: _Instance, index: SemanticIndex, classes: dict[str, int], input_size: int,
                     resized: tuple[int, int], shape: tuple[int, int], grid: tuple[int, int]
                     ) -> list[tuple[int, torch.Tensor]]:
    labels = []
    for name, record in index.get(str(item.record.image), []):
        if name not in classes:
            continue
        union = np.zeros(shape, dtype=bool)
        for target in record.targets:
            union |= decode_target(target, record.image.parent, *shape) > 0
        labels.append((classes[name], to_head_grid(torch.from_numpy(union), resized, input_size, grid)))
    return labels


def _box_prompt(mask: np.ndarray, rng: random.Random, scale: float) -> list[float]:
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    jitter = 0.1 * max(x1 - x0, y1 - y0)
    box = [x0 + rng.uniform(-jitter, jitter), y0 + rng.uniform(-jitter, jitter),
           x1 + rng.uniform(-jitter, jitter), y1 + rng.uniform(-jitter, jitter)]
    return [v * scale for v in box]


def _point_prompts(mask: np.ndarray, rng: random.Random, scale: float, count: int) -> list[list[float]]:
    ys, xs = np.nonzero(mask)
    picks = [rng.randrange(len(xs)) for _ in range(count)]
    return [[(xs[i] + 0.5) * scale, (ys[i] + 0.5) * scale] for i in picks]


def phrase_instances(instances: list[_Instance]) -> list[_Instance]:
    """Instances a phrase names unambiguously: single-target referring records."""
    return [i for i in instances if i.record.file.stem == "referring" and len(i.record.targets) == 1]


def make_batch(instances: list[_Instance], step: int, seed: int, batch_size: int, image_size: int,
               phrases: list[_Instance] | None = None, dense: tuple[SemanticIndex, dict[str, int], int] | None = None
               ) -> dict:
    """Batch ``step`` is a pure function of (seed, step): resuming needs no data state. With
    ``phrases`` the batch is prompted by each instance's referring phrase; with ``dense``
    (semantic index, class ids, head grid side) it also carries each image's semantic labels."""
    rng = random.Random(f"{seed}-{step}")
    use_boxes = step % 2 == 0  # one prompt kind per batch keeps the prompt tensors rectangular
    points_per_mask = rng.randint(1, 3)
    pool = phrases or instances
    pixels, targets, prompts, sizes, labels = [], [], [], [], []
    for _ in range(batch_size):
        item = pool[rng.randrange(len(pool))]
        image = load_image(item.record.image)
        height, width = image.shape[:2]
        mask = decode_target(item.record.targets[item.target], item.record.image.parent, height, width) > 0
        if not mask.any():
            continue
        view = sam_view(image, image_size)
        scale = view.resized_size[0] / height
        pixels.append(view.pixels)
        targets.append(torch.from_numpy(mask.astype(np.float32)))
        sizes.append((view.resized_size, view.original_size))
        if dense:
            index, classes, side = dense
            labels.append(_semantic_labels(item, index, classes, image_size, view.resized_size, (height, width), (side, side)))
        if phrases:
            prompts.append(item.record.query)
        else:
            prompts.append(_box_prompt(mask, rng, scale) if use_boxes else _point_prompts(mask, rng, scale, points_per_mask))
    batch = {"pixel_values": torch.stack(pixels), "targets": targets, "sizes": sizes, "labels": labels}
    if phrases:
        batch["phrases"] = prompts
    elif use_boxes:
        batch["input_boxes"] = torch.tensor(prompts, dtype=torch.float32)[:, None]  # [B, 1, 4]
    else:
        batch["input_points"] = torch.tensor(prompts, dtype=torch.float32)[:, None]  # [B, 1, n, 2]
        batch["input_labels"] = torch.ones(batch["input_points"].shape[:3], dtype=torch.long)
    return batch


# ---- loss ----------------------------------------------------------------------------------
def box_token(sam: SamModel, boxes: torch.Tensor) -> torch.Tensor:
    """[N, 4] boxes (x0, y0, x1, y1, SAM input pixels) -> [N, C]: the mean of SAM's two corner
    tokens for each box, a one-token prompt of the same kind as a projected [SEG] state."""
    sparse, _ = sam.get_prompt_embeddings(input_boxes=boxes[:, None].to(sam.dtype))  # [N, 1, 2, C]
    return sparse[:, 0].mean(1)


def predict_low_res(sam: SamModel, batch: dict, prompter: PhrasePrompter | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-resolution mask logits [B, h, w] for a batch of geometric or phrase prompts, and the
    image embeddings [B, C, h', w'] they were decoded from."""
    embeddings = encode_images(sam, batch["pixel_values"])
    if "phrases" in batch:
        index = torch.arange(len(batch["phrases"]))
        return decode_masks(sam, embeddings, prompter(batch["phrases"]), index)[0], embeddings
    if batch.get("box_token"):
        boxes = batch["input_boxes"][:, 0]
        return decode_masks(sam, embeddings, box_token(sam, boxes), torch.arange(len(boxes)))[0], embeddings
    prompts = {k: batch[k] for k in ("input_boxes", "input_points", "input_labels") if k in batch}
    return sam(image_embeddings=embeddings, multimask_output=False, **prompts).pred_masks[:, 0, 0], embeddings


def sam_loss(sam: SamModel, batch: dict, image_size: int, prompter: PhrasePrompter | None = None,
             dense: DenseHeads | None = None, dense_weight: float = 0.0, bce_weight: float = 2.0,
             dice_weight: float = 0.5) -> tuple[torch.Tensor, dict[str, float]]:
    low_res, embeddings = predict_low_res(sam, batch, prompter)  # [B, h, w]
    bce = dice = low_res.sum() * 0.0
    for logits, target, (resized, original) in zip(low_res, batch["targets"], batch["sizes"]):
        full = upscale_masks(logits[None], image_size, resized, original)  # [1, H, W]
        bce = bce + mask_bce_sum(full, target[None])
        dice = dice + mask_dice_sum(full, target[None])
    count = len(batch["targets"])
    loss = (bce_weight * bce + dice_weight * dice) / count
    parts = {"bce": float(bce.detach()) / count, "dice": float(dice.detach()) / count}
    if dense is not None:
        semantic, colour = dense_losses(dense, embeddings, batch["pixel_values"], batch["labels"])
        loss = loss + dense_weight * (semantic + colour)
        parts |= {"semantic": float(semantic.detach()), "colour": float(colour.detach())}
    return loss, parts


# ---- loop ----------------------------------------------------------------------------------
def train_sam(config: SamStageConfig, resume: bool = False) -> Path:
    """Train (``resume``: from the latest checkpoint) and write ``run_dir/sam`` (an HF SamModel
    folder). Returns that folder. Without ``resume`` an existing run is an error, never overwritten."""
    if config.threads:
        torch.set_num_threads(config.threads)
    run_dir = Path(config.run_dir)
    check_new_or_resumed(run_dir, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(asdict(config), indent=2))
    instances = collect_instances(Path(config.data_dir), config.names)
    torch.manual_seed(config.seed)  # the fixed positional matrix is not checkpointed: same seed, same matrix
    if config.regrid_patch and not config.init_sam:
        raise LisaError("regrid_patch re-grids a trained SAM: set init_sam too (or change size.patch)")
    sam = load_sam(config.init_sam) if config.init_sam else fresh_sam(build_sam_config(config.size))
    if config.regrid_patch:
        sam = regrid_sam(sam, config.regrid_patch)
    phrases = phrase_instances(instances) if config.phrase_every else []
    if config.phrase_every and not phrases:
        raise LisaError(f"phrase_every needs single-target records in {config.data_dir}/referring.jsonl")
    vocabulary = sorted({w for i in phrases for w in words(i.record.query)})
    index = semantic_index(Path(config.data_dir)) if config.dense_weight else {}
    if config.dense_weight and not index:
        raise LisaError(f"dense_weight needs semantic records in {config.data_dir}/semantic.jsonl")
    classes = {name: i for i, name in enumerate(sorted({n for pairs in index.values() for n, _ in pairs}))}
    vision = sam.config.vision_config
    side = UPSCALE * vision.image_size // vision.patch_size
    dense = DenseHeads(vision.output_channels, len(classes)) if index else None
    prompt_dim = sam.config.prompt_encoder_config.hidden_size
    stage = SamStage(sam, PhrasePrompter(vocabulary, prompt_dim) if phrases else None, dense)
    settings = LoopSettings(config.lr, config.warmup_steps, config.max_steps, config.clip,
                            config.save_every, config.keep_last, config.log_every)
    size = sam.config.vision_config.image_size

    def step_loss(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        use_phrases = bool(phrases) and step % config.phrase_every == config.phrase_every - 1
        batch = make_batch(instances, step, config.seed, config.batch_size, size, phrases if use_phrases else None,
                           (index, classes, side) if dense else None)
        # Box batches are the even steps (make_batch), so count them: every k-th box batch.
        k = config.box_token_every
        batch["box_token"] = bool(k) and "input_boxes" in batch and (step // 2) % k == k - 1
        return sam_loss(sam, batch, size, stage.prompter, dense, config.dense_weight,
                        config.bce_weight, config.dice_weight)

    validate = None
    if config.val_dir:
        val_dir = Path(config.val_dir)
        collect_instances(val_dir, config.names)  # a missing or empty val folder fails now, not after the first save

        def validate(step: int) -> dict[str, float]:
            return {f"val_{k}": v for k, v in evaluate_prompted(sam, val_dir, config.val_count, names=config.names).items()}

    # Checkpoint names stay SAM's own when nothing else trains (resumable across versions).
    run_loop("sam", run_dir, stage if (phrases or dense) else sam, step_loss, settings, resume, validate)
    out = run_dir / "sam"
    sam.save_pretrained(out)
    return out


def is_sam_stage(path: str | Path) -> bool:
    data = read_yaml(path)
    return isinstance(data, dict) and data.get("stage") == "sam"


def load_stage_config(path: str | Path) -> SamStageConfig:
    config = parse(SamStageConfig, read_yaml(path) or {}, path)
    if config.stage != "sam":
        raise LisaError(f"{path}: stage must be 'sam'")
    return config


@torch.no_grad()
def evaluate_prompted(sam: SamModel, data_dir: Path, count: int = 200, seed: int = 1,
                      names: list[str] | None = None) -> dict[str, float]:
    """Mean IoU of box- and point-prompted masks on ``count`` instances of ``data_dir``."""
    instances = collect_instances(data_dir, names)
    size = sam.config.vision_config.image_size
    sam.eval()
    scores: dict[str, list[float]] = {"box": [], "point": []}
    for step in range(count // 8):
        for kind, offset in (("box", 0), ("point", 1)):
            batch = make_batch(instances, 2 * step + offset, seed, 8, size)
            low_res, _ = predict_low_res(sam, batch)
            for logits, target, (resized, original) in zip(low_res, batch["targets"], batch["sizes"]):
                full = upscale_masks(logits[None], size, resized, original)[0]
                predicted, truth = full > 0, target > 0
                union = (predicted | truth).sum().item()
                scores[kind].append((predicted & truth).sum().item() / union if union else 1.0)
    return {f"{kind}_miou": float(np.mean(values)) for kind, values in scores.items()}
