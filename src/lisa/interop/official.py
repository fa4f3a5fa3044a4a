"""Released LISA checkpoints (``xinlai/LISA-7B-v1``, ``LISA-13B-llama2-v1``, ``-explanatory``).

The folder holds LLaMA + ``mm_projector`` + SAM (``model.visual_model.*``, original SAM names)
+ ``text_hidden_fcs`` in sharded ``pytorch_model*.bin`` (or safetensors), a slow LLaMA
tokenizer with ``<im_patch> <im_start> <im_end> [SEG]`` added, and a ``config.json`` of
model_type ``llava``; CLIP comes from a separate folder (the output of the official ``merge_lora_weights_and_save_hf_model.py``). Every key is
mapped strictly, one shard at a time: ``load_official`` fills a model, ``convert_official``
writes a lisa-seg folder without building the model.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, PreTrainedTokenizerFast, SamConfig

from lisa.errors import LisaError
from lisa.interop.clip import clip_image_processor, clip_key, clip_vision_config
from lisa.interop.sam_original import infer_sam_config, sam_key
from lisa.interop.sp_tokenizer import load_llama_tokenizer
from lisa.interop.stream import ShardWriter, checkpoint_shapes, checkpoint_shards, iter_shard
from lisa.model.config import LisaConfig, count_image_tokens
from lisa.model.lisa import LisaModel, default_dtype, keep_rope_float32
from lisa.model.weights import check_keys, tied_names

SEG_TOKEN = "[SEG]"
IMAGE_START, IMAGE_END = "<im_start>", "<im_end>"
IMAGE_PLACEHOLDER_ID = -200  # LLaVA's IMAGE_TOKEN_INDEX; never a vocabulary id
SAM_PREFIX = "model.visual_model."
KeyMap = Callable[[str], "str | None"]


# ---- config ---------------------------------------------------------------------------
def read_official_config(directory: Path) -> dict:
    path = directory / "config.json"
    if not path.is_file():
        raise LisaError(f"{directory}: config.json is missing; is this a released LISA folder?")
    config = json.loads(path.read_text())
    if "train_mask_decoder" not in config:
        raise LisaError(
            f"{directory} is not a LISA checkpoint (config.json lacks train_mask_decoder). "
            "For a LLaVA base use `lisa init --vlm DIR --sam SAM --out DIR`."
        )
    return config


def llama_config(config: dict) -> LlamaConfig:
    """The LLaMA half of an official (model_type llava) config."""
    heads = config["num_attention_heads"]
    return LlamaConfig(
        vocab_size=config["vocab_size"],
        hidden_size=config["hidden_size"],
        intermediate_size=config["intermediate_size"],
        num_hidden_layers=config["num_hidden_layers"],
        num_attention_heads=heads,
        num_key_value_heads=config.get("num_key_value_heads") or heads,
        rms_norm_eps=config.get("rms_norm_eps", 1e-6),
        max_position_embeddings=config.get("max_position_embeddings", 2048),
        rope_theta=config.get("rope_theta", 10000.0),
        hidden_act=config.get("hidden_act", "silu"),
        bos_token_id=config.get("bos_token_id", 1),
        eos_token_id=config.get("eos_token_id", 2),
        pad_token_id=config.get("pad_token_id", 0),
        tie_word_embeddings=False,
    )


def llava_v1_config(config: dict, vision: CLIPVisionConfig) -> LlavaConfig:
    """Llava config of a LLaVA-v1 style model: CLIP layer ``mm_vision_select_layer``, CLS
    dropped ("patch"), linear projector (replaced in LisaModel)."""
    strategy = {"patch": "default", "cls_patch": "full"}[config.get("mm_vision_select_feature", "patch")]
    return LlavaConfig(
        vision_config=vision,
        text_config=llama_config(config),
        image_token_id=IMAGE_PLACEHOLDER_ID,
        vision_feature_layer=config.get("mm_vision_select_layer", -2),
        vision_feature_select_strategy=strategy,
        tie_word_embeddings=False,
    )


def official_lisa_config(
    config: dict, vision: CLIPVisionConfig, sam: SamConfig, tokenizer: PreTrainedTokenizerFast, source: str
) -> LisaConfig:
    vlm = llava_v1_config(config, vision)
    seg_id = token_id(tokenizer, SEG_TOKEN)
    if seg_id >= config["vocab_size"]:
        raise LisaError(f"[SEG] id {seg_id} is outside the checkpoint's vocabulary ({config['vocab_size']})")
    start_end = bool(config.get("mm_use_im_start_end", True))
    return LisaConfig(
        vlm=vlm.to_dict(),
        sam=sam.to_dict(),
        seg_token_id=seg_id,
        image_token_id=IMAGE_PLACEHOLDER_ID,
        num_image_tokens=count_image_tokens(vlm),
        chat_template="llava_v1",
        projector="linear",
        image_start_id=token_id(tokenizer, IMAGE_START) if start_end else None,
        image_end_id=token_id(tokenizer, IMAGE_END) if start_end else None,
        strip_text_around_tokens=True,
        out_dim=int(config.get("out_dim", 256)),
        extra={"converted_from": "official LISA", "source": source,
               "source_transformers_version": config.get("transformers_version")},
    )


def token_id(tokenizer: PreTrainedTokenizerFast, token: str) -> int:
    """An added token's id, looked up directly (never via encoding: ``[SEG]`` is added with ``tokenizer.add_tokens``, not as a special token, in the official ``train_ds.py``)."""
    index = tokenizer.convert_tokens_to_ids(token)
    if index is None or index == tokenizer.unk_token_id:
        raise LisaError(f"the tokenizer has no {token} token")
    return int(index)


# ---- keys -----------------------------------------------------------------------------
_LLAMA = re.compile(r"model\.(embed_tokens\.weight|norm\.weight|layers\.\d+\..+)")
_FCS = {
    "model.text_hidden_fcs.0.0.weight": "seg_head.fc1.weight",
    "model.text_hidden_fcs.0.0.bias": "seg_head.fc1.bias",
    "model.text_hidden_fcs.0.2.weight": "seg_head.fc2.weight",
    "model.text_hidden_fcs.0.2.bias": "seg_head.fc2.bias",
}


def llava_v1_key(name: str) -> str | None:
    """LLaMA + linear projector names (LLaVA-v1 and LISA) -> ours; KeyError if unknown."""
    if name.endswith(".rotary_emb.inv_freq"):  # saved by transformers 4.31; recomputed in fp32
        return None
    if name == "lm_head.weight":
        return "vlm.lm_head.weight"
    if name in ("model.mm_projector.weight", "model.mm_projector.bias"):
        return "vlm.model.multi_modal_projector.linear." + name.rsplit(".", 1)[1]
    if _LLAMA.fullmatch(name):
        return "vlm.model.language_model." + name[len("model."):]
    raise KeyError(name)


def official_key_map(iou_head_depth: int) -> KeyMap:
    def official_key(name: str) -> str | None:
        if name in _FCS:
            return _FCS[name]
        if name.startswith(SAM_PREFIX):
            target = sam_key(name[len(SAM_PREFIX):], iou_head_depth)
            return None if target is None else "sam." + target
        return llava_v1_key(name)

    return official_key


@dataclass
class KeyAudit:
    """Collects what a streamed mapping saw; ``finish`` raises with the full lists."""

    expected: dict[str, tuple[int, ...]]  # our name -> shape
    required: set[str]
    seen: set[str] = field(default_factory=set)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)

    def take(self, source: str, target: str | None, tensor: torch.Tensor) -> bool:
        if target is None:
            return False
        if target not in self.expected:
            self.unexpected.append(f"{source} -> {target}")
            return False
        if tuple(tensor.shape) != self.expected[target]:
            self.mismatched.append(f"{source}: {tuple(tensor.shape)} vs {self.expected[target]}")
            return False
        self.seen.add(target)
        return True

    def finish(self) -> None:
        if self.mismatched:
            raise LisaError(f"{len(self.mismatched)} tensors have the wrong shape: {self.mismatched[:10]}")
        check_keys(self.required, self.seen, self.unexpected)


def mapped_shards(
    sources: list[tuple[list[Path], KeyMap]], audit: KeyAudit, dtype: torch.dtype | None, progress: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """One dict of our names per input shard; unknown names are recorded, not raised, so that
    the final error lists all of them. ``progress``: a bar on stderr (TTY only) that advances by
    the bytes of each tensor read, titled with the shard."""
    files = [(path, key_map) for shards, key_map in sources for path in shards]
    bar = _shard_bar(sum(path.stat().st_size for path, _ in files), progress)
    done = 0
    for number, (path, key_map) in enumerate(files, start=1):
        bar.set_description(f"shard {number}/{len(files)} {path.name}")
        shard_end = done + path.stat().st_size
        mapped: dict[str, torch.Tensor] = {}
        for name, tensor in iter_shard(path):
            bar.set_postfix_str(name[-48:], refresh=False)
            bar.update(max(0, min(tensor.numel() * tensor.element_size(), shard_end - bar.n)))
            try:
                target = key_map(name)
            except KeyError:
                audit.unexpected.append(f"{path.name}: {name}")
                continue
            if audit.take(name, target, tensor):
                cast = dtype is not None and tensor.is_floating_point()
                mapped[target] = tensor.to(dtype) if cast else tensor
        done = shard_end
        bar.update(done - bar.n)  # file bytes, not tensor bytes: each shard ends where its file does
        yield mapped
        del mapped
    bar.close()


def _shard_bar(total_bytes: int, progress: bool):
    """A tqdm bar in bytes on stderr, silent unless asked for and stderr is a terminal."""
    import sys

    from tqdm import tqdm

    active = progress and sys.stderr.isatty()
    return tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, disable=not active,
                file=sys.stderr, dynamic_ncols=True)


# ---- the checkpoint as a whole --------------------------------------------------------
@dataclass
class OfficialCheckpoint:
    directory: Path
    clip_dir: Path
    raw_config: dict
    config: LisaConfig
    tokenizer: PreTrainedTokenizerFast

    @classmethod
    def open(cls, directory: str | Path, clip_dir: str | Path) -> "OfficialCheckpoint":
        directory, clip_dir = Path(directory), Path(clip_dir)
        raw = read_official_config(directory)
        sam = infer_sam_config(checkpoint_shapes(directory), prefix=SAM_PREFIX)
        tokenizer = load_llama_tokenizer(directory)
        config = official_lisa_config(raw, clip_vision_config(clip_dir), sam, tokenizer, str(directory))
        return cls(directory, clip_dir, raw, config, tokenizer)

    def sources(self) -> list[tuple[list[Path], KeyMap]]:
        depth = self.config.sam_config().mask_decoder_config.iou_head_depth
        return [(checkpoint_shards(self.directory), official_key_map(depth)), (checkpoint_shards(self.clip_dir), clip_key)]

    def audit(self) -> KeyAudit:
        with torch.device("meta"):
            skeleton = LisaModel(self.config, init_weights=False)
        state = skeleton.state_dict()
        shapes = {name: tuple(tensor.shape) for name, tensor in state.items()}
        return KeyAudit(shapes, set(state) - tied_names(skeleton))

    def checkpoint_dtype(self) -> torch.dtype:
        name = self.raw_config.get("torch_dtype") or self.raw_config.get("dtype") or "float32"
        return getattr(torch, str(name))


def load_official(
    model_dir: str | Path,
    vision_tower_dir: str | Path,
    torch_dtype: torch.dtype = torch.float32,
    torch_device: str | torch.device = "cpu",
):
    """A released LISA folder + a CLIP folder -> (LisaModel, tokenizer, image processor)."""
    checkpoint = OfficialCheckpoint.open(model_dir, vision_tower_dir)
    audit = checkpoint.audit()
    with default_dtype(torch_dtype):
        model = LisaModel(checkpoint.config, init_weights=False)
    for mapped in mapped_shards(checkpoint.sources(), audit, None):
        if not audit.unexpected and not audit.mismatched:
            model.load_state_dict(mapped, strict=False)
    audit.finish()
    model = keep_rope_float32(model.to(device=torch_device, dtype=torch_dtype)).eval()
    return model, checkpoint.tokenizer, clip_image_processor(vision_tower_dir)


def convert_official(
    src: str | Path, vision_tower_dir: str | Path, out: str | Path, dtype: torch.dtype | None = None,
    progress: bool = False,
) -> Path:
    """Write a lisa-seg folder (sharded safetensors, config, tokenizer, image processor),
    one input shard in memory at a time. ``dtype`` None keeps the checkpoint's (bf16);
    ``progress`` shows a bar by shard and tensor on a terminal's stderr."""
    checkpoint = OfficialCheckpoint.open(src, vision_tower_dir)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise LisaError(f"{out} exists and is not empty; choose a new folder")
    audit = checkpoint.audit()
    writer = ShardWriter(out)
    for mapped in mapped_shards(checkpoint.sources(), audit, dtype or checkpoint.checkpoint_dtype(), progress):
        writer.write(mapped)
    try:
        audit.finish()
    except LisaError:
        for part in out.glob("model-part*.tmp"):
            part.unlink()
        raise
    writer.close()
    checkpoint.config.save(out)
    checkpoint.tokenizer.save_pretrained(str(out))
    clip_image_processor(vision_tower_dir).save_pretrained(str(out))
    return out
