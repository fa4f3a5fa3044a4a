"""What DeepSpeed ZeRO-2 and FSDP need of a run, checked before the model is built.

Accelerate 1.15 starts DeepSpeed and FSDP only on GPUs: on a machine without CUDA its processes
become plain DDP over gloo (FSDP) or each believe they are alone (DeepSpeed), so such a launch
is refused instead of silently training another way.
"""

from __future__ import annotations

from lisa.errors import LisaError
from lisa.processes import launched_without_gpus, sharding_engine
from lisa.train.config import TrainConfig


def check_launch(config: TrainConfig) -> None:
    engine = sharding_engine()
    if engine is None:
        return
    if launched_without_gpus():
        raise LisaError(f"{engine} needs GPUs (Accelerate runs CPU processes as DDP only); "
                        "on CPU launch with configs/accelerate/multi_cpu.yaml")
    if engine == "fsdp" and config.val is not None:
        # Validation runs the model's own methods in the main process; FSDP's shards are gathered
        # only inside the wrapped forward, by every process together.
        raise LisaError("val needs the whole model in one process; under FSDP set val: null and score "
                        "checkpoints with lisa export + accelerate launch -m lisa.cli eval")
    if engine == "fsdp" and config.precompute_sam_embeddings:
        raise LisaError("precompute_sam_embeddings calls SAM outside the model's forward; set it to false under FSDP")


def configure_deepspeed(accelerator, config: TrainConfig) -> None:
    """DeepSpeed sizes its batch from a dataloader, and the trainer has none: give it the
    config's micro-batch; its accumulation and clipping must be the config's."""
    ds = accelerator.state.deepspeed_plugin.deepspeed_config
    o = config.optim
    for key, wanted in (("gradient_accumulation_steps", o.grad_accum), ("gradient_clipping", o.clip)):
        if ds.get(key, "auto") not in ("auto", wanted):
            raise LisaError(f"the DeepSpeed config's {key} is {ds[key]}, optim in the lisa config says {wanted}; make them equal")
    ds.update(train_micro_batch_size_per_gpu=o.batch_size, gradient_accumulation_steps=o.grad_accum,
              gradient_clipping=o.clip, train_batch_size=o.batch_size * o.grad_accum * accelerator.num_processes)
