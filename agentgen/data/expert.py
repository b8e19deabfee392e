"""Expert trajectories, one JSON line per state-action pair, in the chat form the agent is trained on.

Format (``<dir>/<env>.jsonl``), one record per turn::

    {"env": "sokoban", "seed": 12, "step": 3, "success": true,
     "messages": [{"role": "system", ...}, {"role": "user", "content": <the agent's prompt>},
                  {"role": "assistant", "content": "<think>...</think><action>Down</action>"}]}

Trajectories of a model checkpoint (``records_from_episodes``) carry the exact chat-templated prompt the
model saw as ``prompt_text`` next to the messages, with the model's own answer as the assistant turn.

The user message is built by the same PromptBuilder the agent uses, so SFT and RL see identical
prompts; the think text is the env's ``expert_thought()`` (derived from the solver's plan, the gold path
or the expert's sub-goal), so it is honest and short. Trajectories are not filtered for success
(papers.md A).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from agentgen.agent.prompt import PromptBuilder
from agentgen.rollout.policy import ExpertPolicy
from agentgen.rollout.runner import EpisodeRunner, EpisodeSpec


def collect(pool, env_name: str, seeds: list[int], prompts: PromptBuilder, max_turns: int,
            desc: str | None = None) -> list[dict]:
    """Play ``seeds`` with the env's expert through ``pool`` (the episode runner every policy goes through)
    and return the chat records, one per turn, in the order of ``seeds``."""
    runner = EpisodeRunner(pool, ExpertPolicy(pool, prompts), max_turns)
    episodes = runner.run([EpisodeSpec(env=env_name, seed=s) for s in seeds], desc=desc or f"expert data {env_name}")
    return [{"env": env_name, "seed": ep.spec.seed, "step": i,
             "messages": prompts.messages(t.user) + [{"role": "assistant", "content": t.response}],
             "success": bool(ep.success)} for ep in episodes for i, t in enumerate(ep.turns)]


def write(records: list[dict], path: Path) -> None:
    """Atomically, through a temporary file of this process's own: every rank of a multi-process job
    collects the same records and writes them to the same path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, path)


def read(path: Path) -> list[dict]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def records_from_episodes(episodes, tokenizer) -> list[dict]:
    """Chat records from a model's own episodes: the prompt it saw (decoded, chat template included) and
    the answer it gave, one record per turn."""
    records: list[dict] = []
    for ep in episodes:
        for i, t in enumerate(ep.turns):
            records.append({"env": ep.spec.env, "seed": ep.spec.seed, "step": i, "success": ep.success,
                            "prompt_text": tokenizer.decode(t.prompt_ids, skip_special_tokens=False),
                            "messages": [{"role": "assistant", "content": t.response}]})
    return records
