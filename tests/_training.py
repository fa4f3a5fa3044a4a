"""Training-test helpers: a few optimizer steps on one fixed batch, as the trainer takes them (clip,
step, schedule), and the tiny model and batch those tests share."""

from __future__ import annotations

import torch

from lisa.train.config import config_from_dict
from lisa.train.trainer import make_optimizer


def fixed_batch_losses(model: torch.nn.Module, batch, steps: int, lr: float = 1e-2) -> list[float]:
    """The loss before each of ``steps`` steps on ``batch`` (AdamW at ``lr``, no warm-up)."""
    config = config_from_dict({"run_dir": "unused", "model": {"build": {}}, "data": [{"type": "jsonl", "dir": "x"}],
                               "optim": {"lr": lr, "warmup_steps": 0, "max_steps": 1000}})
    optimizer, scheduler = make_optimizer(model, config)
    losses = []
    for _ in range(steps):
        out = model(batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
        losses.append(float(out.loss.detach()))
    return losses


def model_and_training_batch(tmp_path_factory):
    """A fresh tiny LisaModel (seed 0) and a collated training batch of two samples of a small
    synthetic world (for tests of the training losses)."""
    import random

    from lisa.data.collate import Collator
    from lisa.data.jsonl import JsonlTrain
    from lisa.model.build import ModelSize, build_model
    from lisa.model.prompting import PromptBuilder
    from lisa.train.synthetic import write_synthetic

    data = write_synthetic(tmp_path_factory.mktemp("shapes"), images=4, size=48, val_images=0)
    torch.manual_seed(0)
    model, tokenizer, processor = build_model(ModelSize())
    loader = JsonlTrain(data, "train", max_queries=2)
    samples = [loader.sample(i, random.Random(i)) for i in range(2)]
    batch = Collator(PromptBuilder(tokenizer, model.config), processor, model.config.sam_image_size)(samples)
    return model, batch


def tiny_folder_with_image_read(directory):
    """A tiny model folder (seed 0) whose seg head was rebuilt with a read of the image tokens
    (seed 1), and the model as saved."""
    from lisa.model.build import write_tiny_model
    from lisa.model.lisa import LisaModel
    from lisa.train.model_setup import rebuild_seg_head

    folder = write_tiny_model(directory, seed=0)
    model = LisaModel.from_pretrained(folder)
    torch.manual_seed(1)
    rebuild_seg_head(model, model.config.seg_head_norm, image_attention=True)
    model.save_pretrained(folder)
    return folder, model


# An image processor view that resizes the whole image to 32x32 without cropping: what a dense
# prompt from the token read needs (lisa.model.folder.check_dense_prompt_view).
SQUASHING_VIEW = type("SquashingView", (), {"size": {"height": 32, "width": 32}, "do_center_crop": False})()


def seg_inputs(model, batch):
    """The batch's [SEG] states, the image of each, the VLM's image tokens and SAM's embeddings."""
    embeds, _, features = model.conversation_inputs_and_features(batch.input_ids, batch.vlm_pixels, batch.image_index)
    hidden = model.conversation_hidden(embeds, batch.input_ids, batch.attention_mask, True)
    rows, cols = model.seg_positions(batch.input_ids)
    embeddings = model.mask_backbone.embed(batch.sam_pixels)
    return hidden[rows, cols], batch.image_index[rows], features, embeddings


def sam_view_frames(model, batch) -> list[tuple[tuple[int, int], int]]:
    """Where each conversation's image lies in SAM's padded square view (target_cell_shares' frames),
    written out here rather than taken from the model, so that tests check the model's own."""
    return [(tuple(batch.resized_sizes[int(i)]), model.mask_backbone.image_size) for i in batch.image_index]
