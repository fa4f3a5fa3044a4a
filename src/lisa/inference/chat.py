"""`lisa chat`: a conversation about one image, with commands and a history that fits the model.

Text is sent as typed (a chat turn, not a segmentation request). The history is trimmed from
the oldest turn when the conversation plus the answer's budget no longer fits the model's
context; the transcript keeps every turn, and ``/save`` writes it with every turn's masks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from lisa.data.image_io import load_image
from lisa.errors import LisaError
from lisa.inference.commands import COMMANDS_HELP
from lisa.inference.queries import SEGMENT_HINT
from lisa.inference.render import write_outputs

Turns = list[tuple[str, str]]


@dataclass
class Turn:
    image: Path
    query: str
    text: str
    masks: np.ndarray  # [N, H, W] bool
    scores: np.ndarray  # [N]
    folder: Path  # where this turn's outputs were written
    present: np.ndarray | None = None  # [N] bool, the presence head's verdicts (None: no head)


@dataclass
class ChatSession:
    """The state of one `lisa chat`: the current image, the model's history, the transcript."""

    pipe: object  # a LisaPipeline
    image_path: Path
    out: Path
    max_new_tokens: int = 64
    say: Callable[[str], None] = print
    history: Turns = field(default_factory=list)
    transcript: list[Turn] = field(default_factory=list)
    trimmed_notice_given: bool = False

    def __post_init__(self) -> None:
        self.image = load_image(self.image_path)

    def greet(self) -> None:
        self.say(f"Chat about {self.image_path}. {SEGMENT_HINT}.")
        self.say("Type /help for commands; an empty line or Ctrl-D ends the chat.")

    def handle(self, line: str) -> bool:
        """Answer one input line; False when the chat should end."""
        line = line.strip()
        if not line:
            return False
        if line.startswith("/"):
            self._command(line)
            return True
        try:
            self._ask(line)
        except LisaError as error:
            self.say(f"error: {error}")
        return True

    # ---- commands ----------------------------------------------------------------------
    def _command(self, line: str) -> None:
        name, _, argument = line.partition(" ")
        argument = argument.strip()
        if name == "/reset":
            self.history.clear()
            self.say("conversation reset (same image)")
        elif name == "/image":
            self._switch_image(argument)
        elif name == "/save":
            self._save(Path(argument) if argument else self.out)
        elif name == "/help":
            self.say(COMMANDS_HELP)
        else:
            self.say(f"unknown command {name}; /help lists the commands")

    def _switch_image(self, argument: str) -> None:
        if not argument:
            self.say("usage: /image PATH")
            return
        try:
            image = load_image(Path(argument).expanduser())
        except LisaError as error:
            self.say(f"error: {error}")
            return
        self.image_path, self.image = Path(argument).expanduser(), image
        self.history.clear()
        self.say(f"now talking about {self.image_path} (new conversation)")

    def _save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        records = []
        for index, turn in enumerate(self.transcript):
            turn_dir = folder / f"turn_{index}"
            if turn_dir.resolve() != turn.folder.resolve():
                write_outputs(turn_dir, load_image(turn.image), turn.query, turn.text, turn.masks, turn.scores, {},
                              present=turn.present)
            records.append({"image": str(turn.image), "query": turn.query, "answer": turn.text,
                            "masks": [f"{turn_dir.name}/mask_{i}.png" for i in range(len(turn.masks))]})
        (folder / "transcript.json").write_text(json.dumps(records, indent=2) + "\n")
        lines = [f"[{r['image']}]\nyou> {r['query']}\nlisa> {r['answer']}\n" for r in records]
        (folder / "transcript.txt").write_text("\n".join(lines))
        self.say(f"saved {len(records)} turn(s) to {folder}/ (transcript.json, transcript.txt, turn_*/)")

    # ---- a question ----------------------------------------------------------------------
    def _ask(self, query: str) -> None:
        history = self._fitting_history(query)
        result = self.pipe(self.image, query, history=history, max_new_tokens=self.max_new_tokens, raw=True)
        folder = self.out / f"turn_{len(self.transcript)}"
        write_outputs(folder, self.image, query, result.text, result.masks, result.scores, result.timings,
                      present=result.present)
        self.transcript.append(Turn(self.image_path, query, result.text, result.masks, result.scores, folder,
                                    result.present))
        self.history = history + [(query, result.text)]
        self.say(f"lisa> {result.text}")
        if len(result.masks):
            empty = int(sum(1 for mask in result.masks if not mask.any()))
            note = f" ({empty} empty)" if empty else ""
            self.say(f"      {len(result.masks)} mask(s){note} -> {folder}/overlay.png")

    def _fitting_history(self, query: str) -> Turns:
        """The longest suffix of the history whose prompt leaves room for the answer (a query too
        long on its own is left to the prompt builder's error)."""
        builder = self.pipe.builder
        budget = builder.max_length - self.max_new_tokens
        history = list(self.history)
        while history:
            try:
                if len(builder.build(history + [(query, None)]).input_ids) <= budget:
                    break
            except LisaError:  # longer than the model accepts at all
                pass
            history.pop(0)
        dropped = len(self.history) - len(history)
        if dropped and not self.trimmed_notice_given:
            self.say(f"note: the conversation outgrew the model's {builder.max_length} tokens; dropping the oldest "
                     "turns to fit (from now on without saying so; /save keeps the whole transcript)")
            self.trimmed_notice_given = True
        return history
