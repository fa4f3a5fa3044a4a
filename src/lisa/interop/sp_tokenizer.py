"""A LLaMA ``tokenizer.model`` (sentencepiece BPE) as a fast tokenizer, without protobuf.

Released LISA folders carry only the slow tokenizer files. transformers converts them with
protobuf or tiktoken, which a minimal install lacks, so we read the pieces through the
sentencepiece API and rebuild the same BPE (merges from piece ranks, byte fallback, the
legacy "prepend ▁ to every text chunk" normaliser). Added tokens keep their ids.
"""

from __future__ import annotations

import json
from pathlib import Path

import sentencepiece
from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers, processors
from transformers import PreTrainedTokenizerFast

from lisa.errors import LisaError

SPACE = "\u2581"


def _pieces(processor: sentencepiece.SentencePieceProcessor) -> dict[str, int]:
    return {processor.id_to_piece(i): i for i in range(processor.get_piece_size())}


def _merges(processor: sentencepiece.SentencePieceProcessor, vocab: dict[str, int]) -> list[tuple[str, str]]:
    """Every split of a mergeable piece into two pieces, ranked by the merged piece's id
    (sentencepiece BPE ranks merges by score, which falls with the id)."""
    ranked: list[tuple[int, int, int, str, str]] = []
    for piece, index in vocab.items():
        if not processor.is_control(index) and not processor.is_unknown(index) and not processor.is_byte(index):
            for cut in range(1, len(piece)):
                left, right = piece[:cut], piece[cut:]
                if left in vocab and right in vocab:
                    ranked.append((index, vocab[left], vocab[right], left, right))
    ranked.sort()
    return [(left, right) for *_, left, right in ranked]


def backend_from_sentencepiece(model_file: Path) -> Tokenizer:
    processor = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    vocab = _pieces(processor)
    unk = processor.id_to_piece(processor.unk_id())
    bpe = models.BPE(vocab=vocab, merges=_merges(processor, vocab), unk_token=unk, fuse_unk=True, byte_fallback=True)
    backend = Tokenizer(bpe)
    backend.normalizer = normalizers.Sequence([normalizers.Prepend(SPACE), normalizers.Replace(" ", SPACE)])
    backend.decoder = decoders.Sequence(
        [decoders.Replace(SPACE, " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    bos = processor.id_to_piece(processor.bos_id())
    backend.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, processor.bos_id())]
    )
    specials = [processor.id_to_piece(i) for i in (processor.unk_id(), processor.bos_id(), processor.eos_id()) if i >= 0]
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in specials])
    return backend


def load_llama_tokenizer(directory: str | Path, special_added: tuple[str, ...] = ("<im_start>", "<im_end>")) -> PreTrainedTokenizerFast:
    """The tokenizer of a LLaMA-based folder, with its added tokens at their saved ids.

    Uses ``tokenizer.json`` when present; else rebuilds from ``tokenizer.model``. The pad token
    is ``<unk>`` (id 0), as the official training and chat scripts set it."""
    directory = Path(directory)
    config = _read_json(directory / "tokenizer_config.json")
    if (directory / "tokenizer.json").is_file():
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(directory / "tokenizer.json"))
    elif (directory / "tokenizer.model").is_file():
        tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend_from_sentencepiece(directory / "tokenizer.model"))
        _add_saved_tokens(tokenizer, _read_json(directory / "added_tokens.json"), special_added)
    else:
        raise LisaError(f"{directory}: no tokenizer (tokenizer.model or tokenizer.json) found")
    tokenizer.bos_token, tokenizer.eos_token, tokenizer.unk_token = _specials(config, directory)
    tokenizer.pad_token = tokenizer.unk_token
    tokenizer.padding_side = "right"
    tokenizer.model_max_length = int(config.get("model_max_length", 2048))
    return tokenizer


def _add_saved_tokens(tokenizer: PreTrainedTokenizerFast, added: dict[str, int], special: tuple[str, ...]) -> None:
    for token, index in sorted(added.items(), key=lambda item: item[1]):
        if token in tokenizer.get_vocab():
            continue
        if index != len(tokenizer):
            raise LisaError(f"added token {token!r} has id {index}, expected {len(tokenizer)} (gap in added_tokens.json)")
        tokenizer.add_tokens([AddedToken(token, special=token in special, normalized=False)], special_tokens=token in special)


def _specials(config: dict, directory: Path) -> tuple[str, str, str]:
    mapping = _read_json(directory / "special_tokens_map.json")

    def pick(name: str, default: str) -> str:
        value = config.get(name) or mapping.get(name) or default
        return value["content"] if isinstance(value, dict) else str(value)

    return pick("bos_token", "<s>"), pick("eos_token", "</s>"), pick("unk_token", "<unk>")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}
