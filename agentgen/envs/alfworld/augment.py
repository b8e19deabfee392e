"""ALFWorld distractors (papers.md A section 6): floor(eps/12) sentences "You notice a <kind> <id> that
looks <descriptor>." (28 kinds, 19 descriptors) at random sentence boundaries of the observation.
When the kind exists in the game (bowl, cup, ...), the distractor gets an id that no real object of
that kind has (a fresh id, as the study), so it never names a real object, hidden ones included.

The real names: ALFWorld names an object "<kind> <n>" with n = 1..(number of objects of that kind in the
game) (alfworld's Demangler numbers the PDDL ids per kind), so the counts per kind in the game file's
PDDL problem give every name; an env that lists its names itself (``object_names()``) is asked instead.
Names in the observation and the admissible actions are added as well."""

from __future__ import annotations

import functools
import json
import math
import random
import re
from collections import Counter, defaultdict
from typing import Any

from agentgen.envs.distractor_words import ALFWORLD_DESCRIPTORS, ALFWORLD_KINDS
from agentgen.envs.distractors import Augmenter, Injection, insert_at_gaps

_NAME = re.compile(r"\b([a-z]+) (\d+)\b")


_PDDL_ID = re.compile(r"^\s*(\S+?)_bar_(\S*)\s+-\s+\w+\s*$", re.MULTILINE)


@functools.lru_cache(maxsize=256)
def game_object_counts(game_file: str) -> Counter:
    """{kind: number of entities} of an ALFWorld game file (game.tw-pddl), counted the way alfworld's
    Demangler numbers them: the id's prefix before the first "_bar_", plus "basin" for sink and bathtub
    basins (compared lower-case, as the engine holds the ids), lower-cased as the game prints it."""
    with open(game_file) as f:
        problem = json.load(f)["pddl_problem"]
    counts: Counter = Counter()
    for prefix, rest in _PDDL_ID.findall(problem):
        counts[(prefix + ("basin" if "basin" in f"{prefix}_bar_{rest}".lower() else "")).lower()] += 1
    return counts


def real_object_names(env: Any, obs: str) -> set[str]:
    """Every "<kind> <n>" name of the current game (see the module docstring)."""
    names: set[str] = set()
    if callable(getattr(env, "object_names", None)):
        names.update(str(n).lower() for n in env.object_names())
    elif callable(getattr(env, "game_file", None)) and env.seed is not None:
        counts = game_object_counts(env.game_file(env.seed))
        names.update(f"{kind} {i}" for kind, n in counts.items() for i in range(1, n + 1))
    else:
        raise RuntimeError(
            "alfworld augmentation needs the game's objects (object_names() or game_file(seed)) so that "
            "distractor ids never collide with hidden real objects"
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
