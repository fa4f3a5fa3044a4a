"""Conversations for /v1/chat: in memory only, bounded in count, forgotten after a TTL."""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from lisa.inference.pipeline import Turns


@dataclass
class Conversation:
    id: str
    image: np.ndarray
    history: Turns = field(default_factory=list)
    last_used: float = 0.0
    busy: bool = False  # a turn is running; a second concurrent turn is refused


class ConversationStore:
    """At most ``max_items`` conversations (the least recently used idle one makes room);
    one unused for ``ttl_s`` seconds is gone."""

    def __init__(self, max_items: int = 64, ttl_s: float = 900.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_items = max_items
        self.ttl_s = ttl_s
        self._clock = clock
        self._items: OrderedDict[str, Conversation] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._items)

    def create(self, image: np.ndarray) -> Conversation | None:
        """A new conversation, marked busy; None when every slot holds a running turn."""
        with self._lock:
            self._expire()
            if len(self._items) >= self.max_items:
                idle = next((key for key, c in self._items.items() if not c.busy), None)
                if idle is None:
                    return None
                del self._items[idle]
            conversation = Conversation(secrets.token_urlsafe(16), image, [], self._clock(), busy=True)
            self._items[conversation.id] = conversation
            return conversation

    def acquire(self, conversation_id: str) -> Conversation | None | bool:
        """The conversation, marked busy; None if unknown or expired; False if a turn is running."""
        with self._lock:
            self._expire()
            conversation = self._items.get(conversation_id)
            if conversation is None:
                return None
            if conversation.busy:
                return False
            conversation.busy = True
            self._items.move_to_end(conversation_id)
            return conversation

    def release(self, conversation: Conversation, turn: tuple[str, str] | None) -> None:
        """End a turn; ``turn`` (query, answer) joins the history when it succeeded."""
        with self._lock:
            if turn is not None:
                conversation.history.append(turn)
            conversation.busy = False
            conversation.last_used = self._clock()

    def _expire(self) -> None:
        now = self._clock()
        for key in [k for k, c in self._items.items() if not c.busy and now - c.last_used > self.ttl_s]:
            del self._items[key]
