"""Sokoban distractors (papers.md A section 6): lines "(r, c) shows a <object> (<location phrase>;
unreachable)." at cells the player can never reach (walls and sealed floor), max(1, floor(eps/10))
lines after the state. Cells are drawn without repetition; a room with fewer unreachable cells gets
one line per cell."""

from __future__ import annotations

import math
import random
from typing import Any

from agentgen.envs.distractor_words import SOKOBAN_OBJECTS, SOKOBAN_PLACES, with_article
from agentgen.envs.distractors import Augmenter, Injection


class SokobanAugmenter(Augmenter):
    env_name = "sokoban"

    def amounts(self) -> dict[str, int]:
        return {"lines": max(1, math.floor(self.eps / 10))}

    def augment(self, obs: str, env: Any, rng: random.Random) -> Injection:
        cells = sorted(env.unreachable_cells())
        chosen = rng.sample(cells, min(self.amounts()["lines"], len(cells)))
        lines = [
            f"({r}, {c}) shows {with_article(rng.choice(SOKOBAN_OBJECTS))} ({rng.choice(SOKOBAN_PLACES)}; unreachable)."
            for r, c in chosen
        ]
        if not lines:
            return Injection(obs)
        return Injection(obs.rstrip("\n") + "\n" + "\n".join(lines), lines)
