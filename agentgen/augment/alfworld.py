"""ALFWorld distractors (papers.md A section 6): floor(eps/12) sentences "You notice a <kind> <id> that
looks <descriptor>." (28 kinds, 19 descriptors) at random sentence boundaries of the observation.
When the kind exists in the game (bowl, cup, ...), the distractor gets an id that no real object of
that kind has (a fresh id, as the study), so it never names a real object: the real names come from
the env's full object list (hidden objects included), plus any "<kind> <n>" in the observation and the
admissible actions."""

from __future__ import annotations

import math
import random
import re
from collections import defaultdict
from typing import Any

from agentgen.augment.base import Augmenter, Injection, insert_at_gaps
from agentgen.augment.vocab import ALFWORLD_DESCRIPTORS, ALFWORLD_KINDS

_NAME = re.compile(r"\b([a-z]+) (\d+)\b")


def real_object_names(env: Any, obs: str) -> set[str]:
    """Every "<kind> <n>" name of the game: the env's object list (hidden objects too), the observation
    and the admissible actions."""
    names: set[str] = set()
    if hasattr(env, "augmentation_context"):
        names.update(str(n).lower() for n in env.augmentation_context().get("objects", ()))
    elif hasattr(env, "object_names"):
        names.update(str(n).lower() for n in env.object_names())
    else:
        raise RuntimeError(
            "alfworld augmentation needs the game's full object list (augmentation_context()['objects'] or "
            "object_names()) so that distractor ids never collide with hidden real objects"
        )
    for text in [obs, *(env.admissible_actions() or [])]:
        names.update(f"{k} {n}" for k, n in _NAME.findall(text.lower()))
    return names


class AlfWorldAugmenter(Augmenter):
    env_name = "alfworld"

    def amounts(self) -> dict[str, int]:
        return {"sentences": math.floor(self.eps / 12 + 1e-9)}

    def augment(self, obs: str, env: Any, rng: random.Random) -> Injection:
        n = self.amounts()["sentences"]
        if n == 0:
            return Injection(obs)
        used: dict[str, set[int]] = defaultdict(set)
        for name in real_object_names(env, obs):
            m = _NAME.fullmatch(name)
            if m:
                used[m.group(1)].add(int(m.group(2)))
        sentences = []
        for _ in range(n):
            kind = rng.choice(ALFWORLD_KINDS)
            taken = used[kind]
            ident = rng.choice([i for i in range(1, max(taken, default=0) + 4) if i not in taken])
            taken.add(ident)
            sentences.append(f"You notice a {kind} {ident} that looks {rng.choice(ALFWORLD_DESCRIPTORS)}.")
        return Injection(insert_at_gaps(obs, sentences, rng), sentences)
