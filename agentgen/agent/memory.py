"""What the agent remembers of its past turns: which (observation, action) pairs go into the next prompt.

``agent.memory`` picks one by name. ``last_k`` (the study's: the last ``agent.history_k`` pairs, papers.md A) and
``full`` (every pair) are built in; another memory is a class with ``recall`` registered in ``MEMORIES``. The
model policy may still drop the oldest pairs when a prompt exceeds its token budget (``limit``)."""

from __future__ import annotations

from typing import Protocol

History = list[tuple[str, str]]


class Memory(Protocol):
    def recall(self, history: History, limit: int | None = None) -> History:
        """The pairs to show, oldest first; at most ``limit`` when one is given."""


class LastK:
    def __init__(self, k: int):
        self.k = k

    def recall(self, history: History, limit: int | None = None) -> History:
        k = self.k if limit is None else min(self.k, limit)
        return history[-k:] if k > 0 else []


class FullHistory:
    def recall(self, history: History, limit: int | None = None) -> History:
        if limit is None:
            return list(history)
        return history[-limit:] if limit > 0 else []


MEMORIES = {"last_k": lambda history_k: LastK(history_k), "full": lambda history_k: FullHistory()}


def make_memory(name: str, history_k: int) -> Memory:
    if name not in MEMORIES:
        raise ValueError(f"agent.memory={name!r} is invalid; valid: {', '.join(MEMORIES)}")
    return MEMORIES[name](history_k)
