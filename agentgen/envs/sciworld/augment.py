"""ScienceWorld distractors: the study did not augment ScienceWorld, so this is agentgen's analogue of
its ALFWorld design (conf/augment/*.yaml documents the eps values).

floor(eps/12) distractor objects "a <kind> that looks <descriptor>" (24 decorative kinds no
ScienceWorld object type has, 16 descriptors, no colours):
- in a room description ("In it, you see:"), as extra item lines at random positions among the room's
  items, looking like the real ones;
- in any other observation, as sentences "You notice a <kind> that looks <descriptor>." on their own
  line after the engine's text.
They never enter the "Objects you can refer to" line the env appends, so the parser does not know
them (an action on one is invalid). A candidate sharing a word with the observation or the task is
skipped, so a distractor never names something that is there."""

from __future__ import annotations

import math
import random
from typing import Any

from agentgen.envs.distractor_words import SCIWORLD_DESCRIPTORS, SCIWORLD_KINDS, with_article
from agentgen.envs.distractors import Augmenter, Injection, words

OBJECTS_PREFIX = "\nObjects you can refer to: "  # the line SciWorldEnv appends (prompt.objects_line)
ROOM_ITEMS = "In it, you see: \n"
ROOM_END = "\nYou also see:"


class SciWorldAugmenter(Augmenter):
    env_name = "sciworld"

    def amounts(self) -> dict[str, int]:
        return {"objects": math.floor(self.eps / 12 + 1e-9)}

    def augment(self, obs: str, env: Any, rng: random.Random) -> Injection:
        n = self.amounts()["objects"]
        if n == 0:
            return Injection(obs)
        cut = obs.find(OBJECTS_PREFIX)
        body, tail = (obs, "") if cut < 0 else (obs[:cut], obs[cut:])
        present = words(obs) | words(env.task_description() or "")
        kinds = [k for k in SCIWORLD_KINDS if not words(k) & present]
        descriptors = [d for d in SCIWORLD_DESCRIPTORS if not words(d) & present]
        if not kinds or not descriptors:
            return Injection(obs)
        things = [f"{with_article(rng.choice(kinds))} that looks {rng.choice(descriptors)}" for _ in range(n)]
        start = body.find(ROOM_ITEMS)
        if start >= 0:
            start += len(ROOM_ITEMS)
            end = body.find(ROOM_END, start)
            end = len(body) if end < 0 else end
            items = body[start:end].split("\n")
            for thing in things:
                items.insert(rng.randrange(len(items) + 1), f"\t{thing}")
            body = body[:start] + "\n".join(items) + body[end:]
            return Injection(body + tail, things)
        sentences = [f"You notice {t}." for t in things]
        return Injection(body.rstrip("\n") + "\n" + " ".join(sentences) + tail, sentences)
