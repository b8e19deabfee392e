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

from agentgen.agent.parser import format_response
from agentgen.agent.prompt import PromptBuilder
from agentgen.console import progress


def collect(pool, env_name: str, seeds: list[int], prompts: PromptBuilder, max_turns: int,
            desc: str | None = None) -> list[dict]:
    """Play ``seeds`` with the env's expert through ``pool`` and return the chat records."""
    records: list[dict] = []
    pending = list(seeds)[::-1]
    bar = progress(len(seeds), desc or f"expert data {env_name}", unit="episode", leave=False)  # SFT's prelude
    while pending:
        batch = {slot: pending.pop() for slot in range(min(pool.num_slots, len(pending)))}
        resets = pool.reset(batch)
        instr = pool.call(list(batch), "instruction")
        state = {s: {"obs": o, "info": i, "hist": [], "recs": []} for s, (o, i) in resets.items()}
        active = set(batch)
        while active:
            slots = sorted(active)
            acts = pool.expert_actions(slots)
            thoughts = pool.expert_thoughts(slots) if prompts.think else {s: None for s in slots}
            step_actions = {}
            for s in slots:
                st = state[s]
                action = acts[s]
                if action is None:  # the expert has nothing to say: end this trajectory here
                    active.discard(s)
                    continue
                user = prompts.user_message(instr[s] or "", st["info"].get("task", ""), st["hist"], st["obs"],
                                            st["info"].get("admissible_actions"))
                st["recs"].append({"env": env_name, "seed": batch[s], "step": len(st["recs"]),
                                   "messages": prompts.messages(user) + [
                                       {"role": "assistant", "content": format_response(action, thoughts[s],
                                                                                        prompts.think)}]})
                st["hist"].append((st["obs"], action))
                step_actions[s] = action
            if not step_actions:
                break
            for s, (obs, _r, done, info) in pool.step(step_actions).items():
                st = state[s]
                st["obs"], st["info"] = obs, info
                if done or len(st["recs"]) >= max_turns:
                    active.discard(s)
                    st["success"] = bool(info.get("success"))
        for s in batch:
            for r in state[s]["recs"]:
                r["success"] = bool(state[s].get("success", False))
            records.extend(state[s]["recs"])
            bar.update(1)
    bar.close()
    return records


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
