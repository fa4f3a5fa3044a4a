"""lisa-tiny stage 2a: teach the from-scratch vision tower what and where, cell by cell.

Trained on VQA text alone (stage 2), the tiny VLM's image tokens carry colour but neither kind
nor place: linear probes on the tokens the LM reads find the object's kind in 14 % of cells
(majority 10 %) and the cell's column in 15 % (chance 12.5 %)
(`python configs/tiny-shapes/probe_vlm_tokens.py --model runs/lisa-tiny-v2/2-vlm/model`). So no
query can bind "the grey diamond" to its tokens, and no [SEG] state can say where it is. This
stage trains the vision tower and projector with four linear heads on the projected tokens
(kind, colour of the object covering the cell, the cell's column and row), from the shapes
world's train scenes redrawn by the generator; the heads are dropped afterwards. Then stage 2b
(VQA, facts, locate questions) trains the whole VLM on as before.

    python configs/tiny-shapes/train_vision_cells.py --model runs/lisa-tiny-v2/2-vlm/model \
        --out runs/lisa-tiny-v3/2a-vision-cells/model --steps 1500 --threads 2

Deterministic for a given --seed; about 10 min on 2 cores. Prints the heads' val accuracy
(kind and colour on the cells an object covers; column and row on every cell). Kind is the slow
one: 0.26 after v3's 1500 steps on 2000 scenes, 0.55 after `--steps 6000 --train-scenes 8000`
(26 min on one thread), 0.81 after 9000 more on 16 000 scenes (lisa-tiny v6), 0.86 after 6000
more on the same scenes, whose train batches then reach 0.96, and 0.91 after 9000 more on
64 000 scenes instead (train 0.89-0.96). Referring followed kind up to 0.81 and not beyond
(docs/lisa-tiny-experiments.md sections 15-17).

The scenes are drawn before training (`--workers N` processes; about 9 ms a scene on one core)
and kept as the processor's 8-bit resized pixels, which give back its float pixels exactly: 49 KB
a scene at the tiny VLM's 128 px, so 64 000 scenes take 3.1 GB. Every --checkpoint-every steps
the run's state goes to OUT.partial/ (the trainer's checkpoint format, lisa.train.checkpoint:
atomic and verified); the same command run again continues from it to the same bytes (the
scenes are drawn again and the batch order replayed, both deterministic), and a command with
other settings refuses to.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from itertools import repeat
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lisa.data.shapes.cells import COLOUR_NAMES, KINDS, labelled_scenes
from lisa.model.folder import load_preprocessing
from lisa.model.lisa import LisaModel
from lisa.threads import set_threads
from lisa.train import checkpoint as ckpt

WEIGHTS_AND_CONFIG = ("model.safetensors", "lisa_config.json")
LABELS = ("kind", "colour", "column", "row")


class CellHeads(nn.Module):
    def __init__(self, width: int, grid: int) -> None:
        super().__init__()
        self.kind = nn.Linear(width, len(KINDS))
        self.colour = nn.Linear(width, len(COLOUR_NAMES))
        self.column = nn.Linear(width, grid)
        self.row = nn.Linear(width, grid)

    def forward(self, tokens: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name)(tokens) for name in LABELS}


def lookup(table: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Float pixels [B, C, h, w] of 8-bit codes [B, C, h, w] through a [C, 256] table."""
    return table[torch.arange(codes.shape[1]).view(1, -1, 1, 1), codes.long()]


class PixelCodes:
    """The VLM's pixels kept as one byte each. A CLIP-style processor resizes 8-bit images and
    then rescales and normalises each channel, so every pixel it gives is one of 256 values per
    channel: store the 8-bit code and a [3, 256] table of those values, and a batch looks up
    exactly the processor's floats at a quarter of the memory (64 000 scenes: 3.1 GB, not 12.6).
    ``count`` scenes are added in order, batch by batch, into one tensor allocated once."""

    def __init__(self, count: int, mean: list[float], std: list[float]) -> None:
        self.mean = torch.tensor(mean).view(1, -1, 1, 1)
        self.std = torch.tensor(std).view(1, -1, 1, 1)
        self.table = torch.full((len(mean), 256), float("nan"))
        self.codes = torch.empty(0, dtype=torch.uint8)
        self.count, self.filled = count, 0

    def add(self, pixels: torch.Tensor) -> None:
        codes = ((pixels * self.std + self.mean) * 255).round().clamp(0, 255).to(torch.uint8)  # [B, 3, h, w]
        before = self.table.clone()
        for channel in range(pixels.shape[1]):
            self.table[channel, codes[:, channel].long().flatten()] = pixels[:, channel].flatten()
        known = ~before.isnan()
        if not torch.equal(lookup(self.table, codes), pixels) or not torch.equal(before[known], self.table[known]):
            raise SystemExit("the image processor's pixels are not one of 256 values per channel (not a CLIP-style "
                             "resize, rescale and normalise): this stage cannot store them as bytes")
        if not self.filled:
            self.codes = torch.empty((self.count, *codes.shape[1:]), dtype=torch.uint8)
        self.codes[self.filled:self.filled + len(codes)] = codes
        self.filled += len(codes)


def load_world(model: LisaModel, processor, split: str, count: int, grid: int, seed: int,
               workers: int = 1) -> dict[str, torch.Tensor]:
    """Scenes 0..count-1 of a split: ``codes`` [N, 3, h, w] uint8 (``pixels(world, pick)`` gives
    the VLM's float pixels), labels [N, grid * grid]. Scenes are drawn by ``workers`` processes."""
    chunks = [range(start, min(count, start + 256)) for start in range(0, count, 256)]
    store = PixelCodes(count, processor.image_mean, processor.image_std)
    kinds, colours = [], []
    with ProcessPoolExecutor(workers) if workers > 1 else nullcontext() as pool:
        drawn = (pool.map(labelled_scenes, repeat(split), chunks, repeat(seed), repeat(grid)) if pool else
                 (labelled_scenes(split, chunk, seed, grid) for chunk in chunks))
        for images, chunk_kinds, chunk_colours in drawn:
            store.add(model.adapter.image_inputs(images, processor).pixels)
            kinds += chunk_kinds
            colours += chunk_colours
    cells = torch.arange(grid * grid)
    if store.filled != count:
        raise SystemExit(f"drew {store.filled} {split} scenes, expected {count}")
    return {"codes": store.codes, "table": store.table, "kind": torch.from_numpy(np.stack(kinds)),
            "colour": torch.from_numpy(np.stack(colours)),
            "column": (cells % grid).expand(count, -1), "row": (cells // grid).expand(count, -1)}


def pixels(world: dict[str, torch.Tensor], pick: torch.Tensor | slice) -> torch.Tensor:
    """The VLM's float pixels [B, 3, h, w] of scenes ``pick`` of a loaded world."""
    return lookup(world["table"], world["codes"][pick])


def losses(model: LisaModel, heads: CellHeads, batch: torch.Tensor,
           labels: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
    from lisa.model.vlms.base import VlmImages

    tokens = torch.stack(model.adapter.image_features(model.vlm, VlmImages(batch)))  # [B, N, D]
    logits = heads(tokens)
    parts = {name: F.cross_entropy(out.flatten(0, 1), labels[name].flatten()) for name, out in logits.items()}
    covered = labels["kind"] > 0  # kind and colour are scored on the cells an object covers
    accuracy = {name: float((out.argmax(-1) == labels[name])[covered if name in ("kind", "colour") else ...]
                            .float().mean()) for name, out in logits.items()}
    return sum(parts.values()), accuracy


def save_with_base_files(model: LisaModel, base: Path, out: Path) -> None:
    """``model`` saved to ``out`` with its base folder's other files (tokenizer, image processor)."""
    out.mkdir(parents=True, exist_ok=True)
    for path in base.iterdir():
        if path.is_file() and path.name not in WEIGHTS_AND_CONFIG:
            shutil.copy2(path, out / path.name)
    model.save_pretrained(out)


RESUMABLE_SETTINGS = ("model", "steps", "batch_size", "lr", "train_scenes", "seed")


def partial_dir(out: Path) -> Path:
    """Where an unfinished run keeps its checkpoints (the trainer's format): beside ``out``,
    removed once ``out`` is written."""
    return out.with_name(out.name + ".partial")


def check_same_settings(partial: Path, settings: dict) -> None:
    """An unfinished run is continued only by the command that started it (checked before the
    scenes are drawn, which takes minutes)."""
    if not ckpt.list_checkpoints(partial / "checkpoints"):
        return
    saved = json.loads((partial / "settings.json").read_text())
    if saved != settings:
        changed = sorted(k for k in settings if saved.get(k) != settings[k])
        raise SystemExit(f"{partial} is an unfinished run with other settings ({', '.join(changed)}): rerun with "
                         f"the same ones to continue it, or delete {partial} to start again")


def resume(partial: Path, trained: nn.Module, optimizer: torch.optim.Optimizer, schedule) -> int:
    """The step an unfinished run reached (0: none), its weights, optimizer, schedule and RNG
    restored from its newest intact checkpoint."""
    found = ckpt.choose_resume(partial / "checkpoints")
    return ckpt.load_checkpoint(found, ckpt.SingleProcess(), trained, optimizer, schedule).step if found else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="a lisa-seg model folder (stage 2's)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument("--train-scenes", type=int, default=2000)
    parser.add_argument("--val-scenes", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0, help="training seed (the world's is 0)")
    parser.add_argument("--threads", default="auto")
    parser.add_argument("--workers", type=int, default=1, help="processes that draw the scenes before training")
    parser.add_argument("--checkpoint-every", type=int, default=500,
                        help="steps between saves of the run's state (OUT.partial/); a rerun continues from it")
    args = parser.parse_args()
    set_threads(args.threads)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k in RESUMABLE_SETTINGS}
    partial = partial_dir(args.out)
    check_same_settings(partial, settings)
    torch.manual_seed(args.seed)
    model = LisaModel.from_pretrained(args.model)
    _, processor = load_preprocessing(args.model)
    grid = int(round(model.config.num_image_tokens ** 0.5))
    if grid * grid != model.config.num_image_tokens or 256 % grid:
        raise SystemExit(f"expected a square image-token grid dividing 256, got {model.config.num_image_tokens} tokens")
    train = load_world(model, processor, "train", args.train_scenes, grid, 0, args.workers)
    val = load_world(model, processor, "val", args.val_scenes, grid, 0, args.workers)
    width = model.vlm.get_input_embeddings().weight.shape[1]
    heads = CellHeads(width, grid)
    model.train()
    trained = [p for n, p in model.named_parameters() if n.startswith("vlm.") and
               ("vision_tower" in n or "multi_modal_projector" in n)]
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trained:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW([*trained, *heads.parameters()], lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    warmup = max(1, args.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * max(0.0, 1 - s / args.steps))
    order = torch.Generator().manual_seed(args.seed)
    trained_parts = nn.ModuleDict({"model": model, "heads": heads})  # what a checkpoint holds the trainable weights of
    done = resume(partial, trained_parts, optimizer, schedule)
    for _ in range(done):  # the batch order is a function of the seed: replay the picks already made
        torch.randint(0, args.train_scenes, (args.batch_size,), generator=order)
    if done:
        print(json.dumps({"resumed_from_step": done, "checkpoint": str(partial)}), flush=True)
    else:
        shutil.rmtree(partial, ignore_errors=True)
        (partial / "checkpoints").mkdir(parents=True)
        (partial / "settings.json").write_text(json.dumps(settings))
    start = time.perf_counter()
    for step in range(done + 1, args.steps + 1):
        pick = torch.randint(0, args.train_scenes, (args.batch_size,), generator=order)
        loss, accuracy = losses(model, heads, pixels(train, pick), {k: train[k][pick] for k in LABELS})
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_([*trained, *heads.parameters()], 1.0)
        optimizer.step()
        schedule.step()
        if step % 100 == 0 or step == args.steps:
            print(json.dumps({"step": step, "loss": round(loss.item(), 4), **{k: round(v, 3) for k, v in accuracy.items()},
                              "seconds": round(time.perf_counter() - start, 1)}), flush=True)
        if args.checkpoint_every and step % args.checkpoint_every == 0 and step < args.steps:
            ckpt.save_checkpoint(partial / "checkpoints" / ckpt.step_name(step), ckpt.SingleProcess(), trained_parts,
                                 optimizer, schedule, ckpt.TrainState(step=step))
            ckpt.prune(partial / "checkpoints", 1)
    model.eval()
    with torch.no_grad():
        scores = [losses(model, heads, pixels(val, slice(i, i + 64)), {k: val[k][i:i + 64] for k in LABELS})[1]
                  for i in range(0, args.val_scenes, 64)]
    weights = [min(64, args.val_scenes - i) for i in range(0, args.val_scenes, 64)]
    val_accuracy = {k: round(sum(w * s[k] for w, s in zip(weights, scores)) / sum(weights), 3) for k in scores[0]}
    save_with_base_files(model, args.model, args.out)
    shutil.rmtree(partial, ignore_errors=True)
    print(json.dumps({"val_cell_accuracy": val_accuracy, "out": str(args.out)}))


if __name__ == "__main__":
    main()
