"""The distractor interface an environment may implement (its ``augment.py``, named by its plugin) and the text
helpers augmenters share; ``agentgen.augment`` wraps an env with the augmenter its plugin declares. What every
environment's augmenter does: turn the observation the engine produced into the one the
agent sees, adding goal-irrelevant distractors and nothing else (the engine state is only read)."""

from __future__ import annotations

import random
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Injection:
    """The observation the agent sees and the distractor strings that were added to it."""

    text: str
    distractors: list[str] = field(default_factory=list)


class Augmenter(ABC):
    """Adds the distractors of one environment at volume ``eps``."""

    env_name: str = ""

    def __init__(self, eps: float, webshop_alpha: float = 1.0):
        if eps <= 0:
            raise ValueError(f"{type(self).__name__}: eps must be > 0, got {eps!r}")
        self.eps = float(eps)
        self.webshop_alpha = float(webshop_alpha)

    @abstractmethod
    def amounts(self) -> dict[str, int]:
        """How many distractors of each sort one observation gets at this eps (for logs and tests)."""

    @abstractmethod
    def augment(self, obs: str, env: Any, rng: random.Random) -> Injection:
        """The augmented observation; ``env`` is the (inner) environment that produced ``obs``."""


# ---------------------------------------------------------------- text helpers
# A sentence ends with . ! or ? followed by white space and a capital letter (so "ALFRED! =-" and
# numbers such as "1.5" are not sentence ends).
_SENTENCE_GAP = re.compile(r"(?<=[.!?])([ \t]+|\n+)(?=[A-Z])")


def sentence_gaps(text: str) -> list[int]:
    """Character offsets where a sentence may be inserted: between sentences and at the end."""
    return [m.start() for m in _SENTENCE_GAP.finditer(text)] + [len(text.rstrip())]


def insert_at_gaps(text: str, sentences: list[str], rng: random.Random) -> str:
    """Insert each sentence at a random sentence gap of ``text`` (several may share a gap)."""
    gaps = sentence_gaps(text)
    chosen: dict[int, list[str]] = {}
    for s in sentences:
        chosen.setdefault(rng.choice(gaps), []).append(s)
    out, last = [], 0
    for pos in sorted(chosen):
        out.append(text[last:pos])
        out.append("".join(" " + s for s in chosen[pos]))
        last = pos
    out.append(text[last:])
    return "".join(out)


def words(text: str) -> set[str]:
    """Lower-case word tokens (letters, digits, hyphens, apostrophes)."""
    return set(re.findall(r"[a-z0-9][a-z0-9'-]*", text.lower()))
