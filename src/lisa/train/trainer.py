"""The training loop (Accelerate): one script for one CPU, one GPU, DDP, FSDP and DeepSpeed ZeRO-2.

Read top to bottom: set up the run folder and the model, then for each optimizer step draw
``grad_accum`` micro-batches from the data stream, step, log, validate and checkpoint.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch

from lisa.errors import LisaError
from lisa.processes import launched_without_gpus
from lisa.train import checkpoint as ckpt
from lisa.train import distributed as dist
from lisa.train.config import TrainConfig, config_to_dict
from lisa.train.data import SamEmbeddingCache, build_mixture, corpus_from, micro_batch
from lisa.train.progress import RunLogger
from lisa.train.schedule import lr_factor
from lisa.train.strategy import check_launch, configure_deepspeed
from lisa.train.seg_warmup import warmup_forward
from lisa.train.validate import load_val_items
from lisa.train.model_setup import base_dir, build_fresh, prepare_model

OOM_HINT = ("out of memory: lower optim.batch_size (and raise optim.grad_accum to keep the effective "
            "batch), set model.gradient_checkpointing: true, or use bf16 / DeepSpeed ZeRO-2 "
            "(configs/accelerate/deepspeed_zero2.yaml) / FSDP (configs/accelerate/fsdp.yaml)")


def make_accelerator(config: TrainConfig):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    precision = config.model.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() else "no"
    # Text-only micro-batches leave the mask decoder unused: DDP must allow it.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    return Accelerator(gradient_accumulation_steps=config.optim.grad_accum, mixed_precision=precision,
                       kwargs_handlers=[ddp], cpu=launched_without_gpus())


def start_run_dir(config: TrainConfig, resume: bool, accelerator) -> Path | None:
    """Checks the run folder; returns the checkpoint to resume from (None: fresh start)."""
    run_dir = Path(config.run_dir)
    checkpoints = run_dir / "checkpoints"
    if ckpt.latest_checkpoint(checkpoints) is not None and not resume:
        raise LisaError(f"{run_dir} already holds checkpoints; pass --resume to continue, or choose another run_dir")
    if accelerator.is_main_process:
        ckpt.remove_partial(checkpoints)
        ckpt.remove_partial(run_dir)
        if resume:
            ckpt.choose_resume(checkpoints)  # damaged newer checkpoints are set aside, with the reason
    accelerator.wait_for_everyone()
    latest = ckpt.latest_checkpoint(checkpoints)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.json").write_text(json.dumps(config_to_dict(config), indent=1))
    return latest


def ensure_base(config: TrainConfig, mixture, accelerator) -> Path:
    directory = base_dir(config)
    if config.model.build is not None and not directory.is_dir():
        if accelerator.is_main_process:
            build_fresh(config, corpus_from(mixture, config.model.tokenizer_corpus_samples), directory)
        accelerator.wait_for_everyone()
    return directory


def make_optimizer(model, config: TrainConfig):
    o = config.optim
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, o.warmup_steps, o.max_steps))
    return optimizer, scheduler


class Trainer:
    def __init__(self, config: TrainConfig, resume: bool = False, progress: bool = True) -> None:
        from accelerate.utils import set_seed

        from lisa.data.collate import Collator
        from lisa.model.prompting import PromptBuilder

        self.config = config
        if config.threads:
            torch.set_num_threads(config.threads)
        check_launch(config)
        self.accelerator = make_accelerator(config)
        if ckpt.engine_dir(self.accelerator) == ckpt.DEEPSPEED_DIR:
            configure_deepspeed(self.accelerator, config)
        if config.seg_warmup is not None and self.accelerator.num_processes > 1:
            # The warm-up calls the model's pieces, not the DDP wrapper's forward.
            raise LisaError("seg_warmup runs in a single process only; launch without accelerate's multi-process mode")
        if config.presence_weight and self.accelerator.num_processes > 1:
            # Its loss is averaged over this process's [SEG]s; the many-process rescaling knows text and masks only.
            raise LisaError("presence_weight trains in a single process only; launch without accelerate's "
                            "multi-process mode")
        set_seed(config.seed)
        resume_from = start_run_dir(config, resume, self.accelerator)
        self.mixture = self._build_mixture()
        self.val_items = load_val_items(config.val) if config.val is not None else []  # before step 1
        model, self.tokenizer, self.processor = prepare_model(config, ensure_base(config, self.mixture, self.accelerator))
        self.collator = Collator(PromptBuilder(self.tokenizer, model.config), self.processor, model.mask_backbone.view)
        optimizer, self.scheduler = make_optimizer(model, config)
        self.model, self.optimizer = self.accelerator.prepare(model, optimizer)
        self.cache = SamEmbeddingCache(config.sam_cache_images) if config.precompute_sam_embeddings else None
        self.state = ckpt.TrainState()
        self.grad_norm: float | None = None  # of the last optimizer step, before clipping
        self.presence_sum = 0.0  # the presence head's BCE summed over the step's micro-batches
        if resume_from is not None:
            self.state = ckpt.load_checkpoint(resume_from, self.accelerator, self.model, self.optimizer, self.scheduler)
        self.logger = RunLogger(Path(config.run_dir), self.accelerator.is_main_process, progress,
                                config.optim.max_steps, self.state.step, {h["step"] for h in self.state.history})

    def _build_mixture(self):
        """The main process first: building may write data (synthetic sources) that the others read."""
        acc = self.accelerator
        mixture = build_mixture(self.config) if acc.is_main_process else None
        acc.wait_for_everyone()
        return mixture if mixture is not None else build_mixture(self.config)

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    # ---- one optimizer step ------------------------------------------------------------
    def micro_step(self) -> torch.Tensor:
        """Forward + backward of one micro-batch; returns [loss, ce, bce, dice] (detached; with
        several processes, this process's part of the global micro-batch's losses)."""
        acc, o = self.accelerator, self.config.optim
        samples = micro_batch(self.mixture, self.state.position, o.batch_size, acc.process_index, acc.num_processes)
        self.state.position += o.batch_size * acc.num_processes
        batch = self.collator(samples).to(acc.device)
        if self.cache is not None:
            batch.sam_embeddings = self.cache.embeddings(self.unwrapped, samples, batch.sam_pixels)
        warmup = self.config.seg_warmup
        world = acc.num_processes
        share = dist.shares(*self._counts(batch)) if world > 1 else None
        with acc.accumulate(self.model):
            if warmup is not None and self.state.step < warmup.steps:
                out = warmup_forward(self.unwrapped, batch, warmup.weight, self.config.model.share_prefix,
                                     warmup.attention_weight)
            else:
                out = self.model(batch, share_prefix=self.config.model.share_prefix,
                                 attention_weight=self.config.seg_attention_weight,
                                 presence_weight=self.config.presence_weight)
            if out.presence_loss is not None:
                self.presence_sum += float(out.presence_loss)
            loss, parts = dist.loss_and_parts(out, share, world)
            acc.backward(loss)
            if acc.sync_gradients and o.clip > 0:
                norm = acc.clip_grad_norm_(self.model.parameters(), o.clip)  # None under DeepSpeed
                self.grad_norm = None if norm is None else float(norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return parts

    def _counts(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(this process's, all processes') supervised tokens and masks."""
        local = dist.local_counts(batch)
        return local, dist.sum_over_processes(local, self.accelerator)

    def optimizer_step(self) -> torch.Tensor:
        sums = torch.zeros(4)
        self.presence_sum = 0.0
        try:
            for _ in range(self.config.optim.grad_accum):
                sums += self.micro_step()
        except torch.OutOfMemoryError as error:
            raise LisaError(OOM_HINT) from error
        except RuntimeError as error:
            if "can't allocate memory" in str(error) or "out of memory" in str(error):
                raise LisaError(OOM_HINT) from error
            raise
        self.scheduler.step()
        self.state.step += 1
        self.state.samples += self.config.optim.batch_size * self.config.optim.grad_accum * self.accelerator.num_processes
        if self.accelerator.num_processes > 1:  # each process holds its part of the global means
            sums = dist.sum_over_processes(sums, self.accelerator)
        return sums / self.config.optim.grad_accum

    # ---- validation and checkpoints ----------------------------------------------------
    def validate(self) -> dict[str, float]:
        from lisa.train.validate import run_validation

        with self.accelerator.autocast():
            scores = run_validation(self.config.val, self.unwrapped, self.tokenizer, self.processor, self.val_items)
        self.unwrapped.train()
        return scores

    def maybe_validate(self) -> None:
        """Validate at every ``val_every`` step and the last one, once per step (a run resumed from
        a checkpoint saved just before its validation runs that validation first)."""
        c, s = self.config, self.state
        if c.val is None or not (s.step % c.val_every == 0 or s.step == c.optim.max_steps):
            return
        if any(h["step"] == s.step for h in s.history):
            return
        if self.accelerator.is_main_process:
            scores = self.validate()
            s.history.append({"step": s.step, **scores})
            self.logger.log_val(s.step, scores)
            if s.best_metric is None or scores["giou"] > s.best_metric:
                s.best_metric, s.best_step = scores["giou"], s.step
                self.save_best()
        self.accelerator.wait_for_everyone()

    def save_best(self) -> None:
        from lisa.model.weights import write_safetensors
        from lisa.train.trainable import trainable_state

        best = Path(self.config.run_dir) / "best"
        tmp = best.with_name("best.tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        write_safetensors({k: v.contiguous() for k, v in trainable_state(self.unwrapped).items()}, str(tmp / ckpt.WEIGHTS_NAME))
        (tmp / ckpt.STATE_NAME).write_text(json.dumps({"step": self.state.step, "giou": self.state.best_metric}))
        ckpt.publish(tmp, best)

    def maybe_save(self) -> None:
        c, s = self.config, self.state
        if s.step % c.save_every == 0 or s.step == c.optim.max_steps:
            checkpoints = Path(c.run_dir) / "checkpoints"
            ckpt.save_checkpoint(checkpoints / ckpt.step_name(s.step), self.accelerator, self.model,
                                 self.optimizer, self.scheduler, s)
            if self.accelerator.is_main_process:
                ckpt.prune(checkpoints, c.keep_last)

    # ---- the loop ----------------------------------------------------------------------
    def fit(self) -> Path:
        c = self.config
        self.model.train()
        started, start_samples = time.perf_counter(), self.state.samples
        if self.state.step > 0:
            self.maybe_validate()  # the checkpoint was saved before this step's validation
        while self.state.step < c.optim.max_steps:
            losses = self.optimizer_step()
            rate = (self.state.samples - start_samples) / max(1e-9, time.perf_counter() - started)
            extra = {"presence": self.presence_sum / c.optim.grad_accum} if c.presence_weight else None
            self.logger.log_step(self.state.step, losses, self.scheduler.get_last_lr()[0], rate,
                                 force=self.state.step % c.log_every == 0, grad_norm=self.grad_norm, extra=extra)
            self.maybe_save()  # first: a failing validation loses no training
            self.maybe_validate()
        self.logger.close()
        self.accelerator.wait_for_everyone()
        self.accelerator.end_training()  # ends the process group: gloo's threads abort an exit that leaves them
        return Path(c.run_dir)


def train(config: TrainConfig, resume: bool = False, progress: bool = True) -> Path:
    """Run (or resume) training; returns the run folder."""
    return Trainer(config, resume, progress).fit()
