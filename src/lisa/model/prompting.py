"""Conversation -> token ids and labels, with the image and [SEG] placed as ids, never parsed from text.

Every piece of text (system prompt, user text, answers) is encoded by a *plain* copy of the
tokenizer that knows no added tokens, so a user who types ``<image>``, ``[SEG]`` or ``</s>``
gets those characters as ordinary text. Special ids (BOS, image span, [SEG], EOS) are inserted
by this module alone.

Template ``llava_v1`` (every released LISA checkpoint)::

    <s>SYSTEM USER: <im_start><image>*N<im_end>\\nQUESTION ASSISTANT: ANSWER</s>USER: ... ASSISTANT:

Template ``tokenizer``: the tokenizer's own chat template (any chat model). The template is
rendered with private-use marker characters around the image, the user texts and the answers;
the template's own text (role markers, special tokens) is encoded by the full tokenizer, user
text by the plain copy, and the first token the template emits after each answer (its
end-of-turn token) is supervised and stops generation.

Adjacent text pieces are encoded as one chunk, exactly as a tokenizer would see the rendered
string; labels come from character offsets, so only assistant answers and their EOS are
supervised, with no fragile "minus two" arithmetic.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerBase

from lisa.batch import SEG_TOKEN
from lisa.errors import LisaError
from lisa.model.config import LisaConfig
from lisa.model.vlms import adapter_for

IGNORE_INDEX = -100
TEMPLATES = ("llava_v1", "tokenizer")
# Private-use characters that mark where the image, user texts and answers sit in a rendered
# chat template; user text may not contain them.
_IMAGE, _USER, _USER_END, _ANSWER, _ANSWER_END = "\ue000", "\ue001", "\ue002", "\ue003", "\ue004"
_MARKERS = re.compile("([\ue000-\ue004])")
LLAVA_V1_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)


@dataclass
class _Text:
    text: str
    supervised: bool


@dataclass
class _Ids:
    ids: list[int]
    supervised: bool
    strips_neighbours: bool  # 4.31 behaviour: added tokens strip whitespace next to them


@dataclass
class EncodedPrompt:
    input_ids: list[int]
    labels: list[int]  # IGNORE_INDEX everywhere except assistant answers and their EOS


def plain_tokenizer(tokenizer: PreTrainedTokenizerBase) -> Tokenizer:
    """A copy of the fast tokenizer's backend without added tokens: text stays text."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        raise LisaError(f"{type(tokenizer).__name__} is not a fast tokenizer; lisa-seg needs one")
    data = json.loads(backend.to_str())
    data["added_tokens"] = []
    data["post_processor"] = None
    data["truncation"] = None
    data["padding"] = None
    return Tokenizer.from_str(json.dumps(data))


class PromptBuilder:
    """Builds input ids (image span expanded) and labels for one conversation."""

    def __init__(self, tokenizer: PreTrainedTokenizerBase, config: LisaConfig) -> None:
        if config.chat_template not in TEMPLATES:
            raise LisaError(f"unknown chat template {config.chat_template!r}; supported: {', '.join(TEMPLATES)}")
        if config.chat_template == "tokenizer" and not getattr(tokenizer, "chat_template", None):
            raise LisaError("chat_template 'tokenizer' needs a tokenizer with a chat template")
        if tokenizer.eos_token_id is None:
            raise LisaError("the tokenizer has no EOS token")
        self.config = config
        self.adapter = adapter_for(config.vlm)
        # None: the count varies per image and ``build`` must be given it
        self.fixed_image_tokens = self.adapter.fixed_image_tokens(config.vlm_config())
        self.tokenizer = tokenizer
        self.plain = plain_tokenizer(tokenizer)
        self.bos_id = tokenizer.bos_token_id
        self.eos_id = int(tokenizer.eos_token_id)
        self.seg_id = config.seg_token_id
        self.max_length = int(config.vlm["text_config"].get("max_position_embeddings", 4096))
        self.stop_ids = [self.eos_id]
        if config.chat_template == "tokenizer":
            end_of_turn = self._end_of_turn_id()
            if end_of_turn is not None and end_of_turn not in self.stop_ids:
                self.stop_ids.append(end_of_turn)

    def build(self, turns: list[tuple[str, str | None]], image_tokens: int | None = None) -> EncodedPrompt:
        """``turns`` = [(user, assistant)]; the last assistant may be None (prompt for generation).
        ``image_tokens``: the image's token count (the adapter's ``image_token_counts``); needed
        when the VLM's count varies per image, else it defaults to the fixed count."""
        count = image_tokens if image_tokens is not None else self.fixed_image_tokens
        if count is None:
            raise LisaError(f"a {self.adapter.model_type} prompt needs its image's token count (image_tokens)")
        if not turns:
            raise LisaError("a conversation needs at least one user turn")
        for user, _ in turns:
            if not user or not user.strip():
                raise LisaError("empty query: type what you are looking for in the image")
            if _MARKERS.search(user):
                raise LisaError("the query contains reserved characters (U+E000 to U+E004); remove them")
        if self.config.chat_template == "tokenizer":
            pieces = self._render_chat_template(turns, count)
        else:
            pieces = self._render(turns, count)
        encoded = self._encode(pieces)
        if len(encoded.input_ids) > self.max_length:
            raise LisaError(
                f"the conversation is {len(encoded.input_ids)} tokens long; this model accepts "
                f"{self.max_length}. Shorten the query or the chat history."
            )
        return encoded

    def _render(self, turns: list[tuple[str, str | None]], image_tokens: int) -> list[_Text | _Ids]:
        cfg = self.config
        strip = cfg.strip_text_around_tokens
        pieces: list[_Text | _Ids] = []
        if self.bos_id is not None:
            pieces.append(_Ids([self.bos_id], False, False))
        pieces.append(_Text(LLAVA_V1_SYSTEM + " USER: ", False))
        if cfg.image_start_id is not None:
            pieces.append(_Ids([cfg.image_start_id], False, strip))
        pieces.append(_Ids([cfg.image_token_id] * image_tokens, False, strip))
        if cfg.image_end_id is not None:
            pieces.append(_Ids([cfg.image_end_id], False, strip))
        pieces.append(_Text("\n", False))
        for index, (user, answer) in enumerate(turns):
            if index > 0:
                pieces.append(_Text("USER: ", False))
            pieces.append(_Text(user + " ASSISTANT:", False))
            if answer is None:
                if index != len(turns) - 1:
                    raise LisaError("only the last turn may lack an answer")
                break
            pieces.extend(self._render_answer(" " + answer))
            pieces.append(_Ids([self.eos_id], True, False))
        return pieces

    def _render_chat_template(self, turns: list[tuple[str, str | None]], image_tokens: int) -> list[_Text | _Ids]:
        messages = []
        for index, (user, answer) in enumerate(turns):
            image = self.adapter.chat_image_prefix + _IMAGE + self.adapter.chat_image_suffix if index == 0 else ""
            messages.append({"role": "user", "content": image + _USER + user + _USER_END})
            if answer is not None:
                messages.append({"role": "assistant", "content": _ANSWER + answer + _ANSWER_END})
        rendered = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=turns[-1][1] is None
        )
        return self._pieces_from_rendered(rendered, image_tokens)

    def _pieces_from_rendered(self, rendered: str, image_tokens: int) -> list[_Text | _Ids]:
        pieces: list[_Text | _Ids] = []
        state, after_answer = "template", False
        for part in _MARKERS.split(rendered):
            if part == _IMAGE:
                pieces.append(_Ids([self.config.image_token_id] * image_tokens, False, False))
            elif part in (_USER, _ANSWER):
                state = "user" if part == _USER else "answer"
            elif part in (_USER_END, _ANSWER_END):
                after_answer, state = part == _ANSWER_END, "template"
            elif state == "user":
                pieces.append(_Text(part, False))
            elif state == "answer":
                pieces.extend(self._render_answer(part))
            elif part:
                ids = self.tokenizer.encode(part, add_special_tokens=False)  # template text: special tokens allowed
                if after_answer and ids:  # the end-of-turn token is learned
                    pieces.append(_Ids(ids[:1], True, False))
                    ids = ids[1:]
                pieces.append(_Ids(ids, False, False))
                after_answer = False
        return pieces  # BOS only if the template writes it: chat templates decide

    def _end_of_turn_id(self) -> int | None:
        """The first token the chat template emits after an assistant answer."""
        pieces = self._render_chat_template([("x", "y")], 1)
        supervised = [p for p in pieces if isinstance(p, _Ids) and p.supervised and p.ids]
        return supervised[-1].ids[0] if supervised else None

    def _render_answer(self, answer: str) -> list[_Text | _Ids]:
        pieces: list[_Text | _Ids] = []
        for index, part in enumerate(answer.split(SEG_TOKEN)):
            if index > 0:
                pieces.append(_Ids([self.seg_id], True, self.config.strip_text_around_tokens))
            pieces.append(_Text(part, True))
        return pieces

    def _encode(self, pieces: list[_Text | _Ids]) -> EncodedPrompt:
        input_ids: list[int] = []
        labels: list[int] = []
        chunk: list[_Text] = []
        left_strip = False
        for piece in pieces + [None]:
            if isinstance(piece, _Text):
                chunk.append(piece)
                continue
            right_strip = piece is not None and piece.strips_neighbours
            ids, sup = self._encode_chunk(chunk, left_strip, right_strip)
            input_ids += ids
            labels += [i if s else IGNORE_INDEX for i, s in zip(ids, sup)]
            chunk = []
            if piece is None:
                break
            input_ids += piece.ids
            labels += piece.ids if piece.supervised else [IGNORE_INDEX] * len(piece.ids)
            left_strip = piece.strips_neighbours
        return EncodedPrompt(input_ids, labels)

    def _encode_chunk(
        self, chunk: list[_Text], left_strip: bool, right_strip: bool
    ) -> tuple[list[int], list[bool]]:
        """Encode adjacent text pieces as one string; a token is supervised if it starts in a
        supervised piece."""
        text = "".join(p.text for p in chunk)
        starts, position = [], 0
        for piece in chunk:
            starts.append(position)
            position += len(piece.text)
        offset = 0
        if left_strip:
            stripped = text.lstrip()
            offset = len(text) - len(stripped)
            text = stripped
        if right_strip:
            text = text.rstrip()
        if not text:
            return [], []
        encoding = self.plain.encode(text, add_special_tokens=False)
        supervised = []
        for start, _ in encoding.offsets:
            char = start + offset
            owner = max(i for i, s in enumerate(starts) if s <= char) if starts else 0
            supervised.append(chunk[owner].supervised)
        return list(encoding.ids), supervised

    def decode(self, ids: list[int]) -> str:
        """Answer text; [SEG] shown literally, EOS / padding / image ids dropped."""
        hidden = {*self.stop_ids, self.config.image_token_id, self.bos_id, self.tokenizer.pad_token_id}
        parts: list[str] = []
        text_ids: list[int] = []
        for token in ids:
            if token in hidden:
                continue
            if token == self.seg_id:
                parts.append(self.plain.decode(text_ids, skip_special_tokens=False))
                parts.append(SEG_TOKEN)
                text_ids = []
            else:
                text_ids.append(token)
        parts.append(self.plain.decode(text_ids, skip_special_tokens=False))
        return _join_decoded(parts)


def _join_decoded(parts: list[str]) -> str:
    text = ""
    for part in parts:
        if part == SEG_TOKEN and text and not text.endswith(" "):
            text += " "
        text += part
    return text.strip()
