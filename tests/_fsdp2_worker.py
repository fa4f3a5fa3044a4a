"""One process of the FSDP2 smoke test (run by torchrun, 2 processes, gloo on CPU).

Accelerate 1.15 turns FSDP on only for GPU processes, so this calls torch's ``fully_shard``
itself, the way Accelerate's FSDP2 path does with configs/accelerate/fsdp.yaml: each decoder /
encoder layer is a unit, the root holds the rest. Both processes train on the same batch, so
the sharded model must follow an unsharded copy; the main process writes what it found.
"""

from __future__ import annotations

import copy
import json
import random
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.fsdp import fully_shard

from lisa.data.collate import Collator
from lisa.data.jsonl import JsonlTrain
from lisa.model.build import ModelSize, build_model
from lisa.model.prompting import PromptBuilder
from lisa.train.checkpoint import SingleProcess, full_trainable_state
from lisa.train.config import LoraSection
from lisa.train.lora import add_lora
from lisa.train.synthetic import write_synthetic
from lisa.train.trainable import set_trainable, trainable_state

UNITS = ("LlamaDecoderLayer", "CLIPEncoderLayer", "SamVisionLayer")  # as configs/accelerate/fsdp.yaml
STEPS = 3


def main(out: Path) -> None:
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    torch.manual_seed(0)
    data = write_synthetic(out / f"data-{rank}", images=4, size=48, val_images=0)
    model, tokenizer, processor = build_model(ModelSize())
    add_lora(model, LoraSection(dropout=0.0))
    set_trainable(model, [model.config.seg_token_id])  # LoRA, one embedding row, decoder, head; the rest frozen
    reference = copy.deepcopy(model)
    initial = {name: t.clone() for name, t in trainable_state(reference).items()}
    for module in list(model.modules()):
        if type(module).__name__ in UNITS:
            fully_shard(module)
    fully_shard(model)
    loader = JsonlTrain(data, "train", max_queries=2)
    batch = Collator(PromptBuilder(tokenizer, model.config), processor, model.config.sam_image_size)(
        [loader.sample(i, random.Random(i)) for i in range(2)])
    losses = {"fsdp": [], "plain": []}
    for name, net in (("fsdp", model), ("plain", reference)):
        optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-2)
        for _ in range(STEPS):
            out_ = net(batch)
            out_.loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses[name].append(float(out_.loss.detach()))
    gathered = full_trainable_state(SingleProcess(), model)  # every process: gathers the shards
    expected = trainable_state(reference)
    sharded = [n for n, p in model.named_parameters() if hasattr(p, "full_tensor") and p.to_local().numel() < p.numel()]
    if rank == 0:
        report = {
            "losses": losses,
            "names_equal": sorted(gathered) == sorted(expected),
            "max_diff": max(float((gathered[n] - expected[n]).abs().max()) for n in expected),
            "moved": max(float((expected[n] - initial[n]).abs().max()) for n in expected),
            "sharded_parameters": len(sharded),
            "trainable_sharded": sum(1 for n in sharded if n in expected),
        }
        (out / "fsdp2.json").write_text(json.dumps(report, indent=1))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
