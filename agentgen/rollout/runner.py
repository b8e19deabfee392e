"""Plays episodes: batched generation across many environment instances at once.

Each turn, every active episode gets a fresh prompt (instruction, task, last k steps, observation,
admissible actions), all prompts are generated in batches, the parsed actions are stepped in the env
pool, and finished episodes free their slot for the next pending one. The result is a list of
``Episode`` records holding every turn's prompt and response tokens, ready for training.

An episode can also *continue* an earlier one (Tree-GRPO expansions): ``spec.meta["prefix"]`` holds the
earlier episode's first turns; the runner resets the env with the same seed, replays their actions
(restoring the env state without generating anything), rebuilds the agent's history from the stored
turns, and generates only the continuation. Replays of many episodes advance together, one action per
batched pool step, so worker pools stay busy.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentgen.agent.parser import parse_response
from agentgen.agent.prompt import PromptBuilder
from agentgen.console import progress

log = logging.getLogger(__name__)


@dataclass
class Turn:
    prompt_ids: list[int]
    response_ids: list[int]
    response: str
    action: str | None
    reward: float
    observation: str  # what the agent saw this turn (after any augmentation)
    format_ok: bool
    invalid: bool
    state_key: Any = None  # the env's key of the state this turn acted in (GiGPO's anchor state)
    capped: bool = False  # the answer was cut at the token cap (trainer.health watches the share)


@dataclass
class EpisodeSpec:
    env: str
    seed: int
    group: int = 0  # episodes sharing a group id are compared by GRPO-style baselines
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Episode:
    """One played episode. For a continuation (``spec.meta["prefix"]``), ``turns`` holds only the newly
    generated turns; ``prefix_steps`` counts the replayed ones before them."""

    spec: EpisodeSpec
    task: str
    turns: list[Turn] = field(default_factory=list)
    success: bool = False
    aborted: bool = False
    truncated: bool = False
    final_info: dict[str, Any] = field(default_factory=dict)
    prefix_steps: int = 0
    replay_mismatches: int = 0  # 1 when the replay did not reproduce the prefix (the episode is aborted)

    @property
    def ret(self) -> float:
        """Return of the generated turns (a continuation's prefix rewards are the prefix's own)."""
        return sum(t.reward for t in self.turns)

    @property
    def steps(self) -> int:
        return len(self.turns)


@dataclass
class _Active:
    episode: Episode
    instruction: str
    observation: str
    admissible: list[str] | None
    history: list[tuple[str, str]] = field(default_factory=list)
    state_key: Any = None


class EpisodeRunner:
    """Runs episodes of one environment through an env pool and a generator."""

    def __init__(self, pool, generator, tokenizer, prompts: PromptBuilder, max_prompt_tokens: int,
                 max_response_tokens: int, max_turns: int):
        self.pool = pool
        self.generator = generator
        self.tokenizer = tokenizer
        self.prompts = prompts
        self.max_prompt_tokens = max_prompt_tokens
        self.max_response_tokens = max_response_tokens
        self.max_turns = max_turns
        self.num_prompt_truncations = 0
        self.num_replayed_steps = 0  # env steps spent restoring continuation prefixes
        self.num_replay_mismatches = 0  # continuations aborted because the replay differed from the prefix

    def encode_prompt(self, state: _Active) -> list[int]:
        """Chat-template the prompt; drop history, oldest first, until it fits the token budget."""
        k = self.prompts.history_k
        while True:
            user = self.prompts.user_message(state.instruction, state.episode.task, state.history,
                                             state.observation, state.admissible, history_k=k)
            ids = self.tokenizer.apply_chat_template(self.prompts.messages(user), add_generation_prompt=True,
                                                     tokenize=True, return_dict=False)
            if hasattr(ids, "input_ids"):
                ids = ids["input_ids"]
            ids = list(ids)
            if len(ids) <= self.max_prompt_tokens or k == 0:
                break
            k -= 1
        if len(ids) > self.max_prompt_tokens:  # last resort: keep the end (observation and format rules)
            self.num_prompt_truncations += 1
            ids = ids[-self.max_prompt_tokens:]
        return ids

    def run(self, specs: list[EpisodeSpec], temperature: float, top_p: float = 1.0, top_k: int = 0,
            desc: str | None = None, on_episode: Callable[[Episode], None] | None = None) -> list[Episode]:
        pending = deque(enumerate(specs))
        free = list(range(self.pool.num_slots))[::-1]
        active: dict[int, tuple[int, _Active]] = {}
        results: list[Episode | None] = [None] * len(specs)
        # a transient bar when ``desc`` names one (rollouts and evaluations have their phase's bars instead)
        bar = progress(len(specs), desc or "episodes", unit="episode", leave=False, show=None if desc else False)
        while pending or active:
            starting: dict[int, tuple[int, EpisodeSpec]] = {}
            while free and pending:
                starting[free.pop()] = pending.popleft()
            if starting:
                resets = self.pool.reset({slot: spec.seed for slot, (_, spec) in starting.items()})
                instructions = self.pool.call(list(starting), "instruction")
                for slot, (obs, info) in resets.items():
                    i, spec = starting[slot]
                    ep = Episode(spec=spec, task=info.get("task", ""))
                    active[slot] = (i, _Active(ep, instructions[slot] or "", obs, info.get("admissible_actions"),
                                               state_key=info.get("state_key")))
                prefixes = {slot: spec.meta["prefix"] for slot, (_, spec) in starting.items()
                            if spec.meta.get("prefix")}
                for slot in self._replay(prefixes, {slot: active[slot][1] for slot in prefixes}):
                    i, st = active.pop(slot)  # the replay could not restore the state: abort, free the slot
                    results[i] = st.episode
                    free.append(slot)
                    bar.update(1)
                    if on_episode:
                        on_episode(st.episode)
            if not active:
                continue
            slots = list(active)
            prompt_ids = [self.encode_prompt(active[s][1]) for s in slots]
            responses = self.generator.generate(prompt_ids, self.max_response_tokens, temperature, top_p, top_k)
            actions: dict[int, str | None] = {}
            parsed = {}
            for slot, ids in zip(slots, responses):
                text = self.tokenizer.decode(ids, skip_special_tokens=True)
                p = parse_response(text, self.prompts.think)
                parsed[slot] = (text, p)
                actions[slot] = p.action
            steps = self.pool.step(actions)
            for slot, pids, rids in zip(slots, prompt_ids, responses):
                i, st = active[slot]
                obs, reward, done, info = steps[slot]
                text, p = parsed[slot]
                st.episode.turns.append(Turn(pids, rids, text, p.action, float(reward), st.observation, p.format_ok,
                                             bool(info.get("invalid_action", False)), st.state_key,
                                             len(rids) >= self.max_response_tokens))
                st.history.append((st.observation, p.action if p.action is not None else text.strip()[:200]))
                st.observation, st.admissible, st.state_key = obs, info.get("admissible_actions"), info.get("state_key")
                ep = st.episode
                if not done and ep.prefix_steps + len(ep.turns) >= self.max_turns:
                    done, ep.truncated = True, True
                if done:
                    ep.success = bool(info.get("success", False))
                    ep.aborted = bool(info.get("aborted", False))
                    ep.truncated = ep.truncated or bool(info.get("truncated", False))
                    ep.final_info = {k: v for k, v in info.items() if k not in ("admissible_actions", "state_key")}
                    results[i] = ep
                    del active[slot]
                    free.append(slot)
                    bar.update(1)
                    if on_episode:
                        on_episode(ep)
        bar.close()
        return [r for r in results if r is not None]

    def _replay(self, prefixes: dict[int, list[Turn]], states: dict[int, _Active]) -> list[int]:
        """Step each slot through its prefix's actions (one batched pool step per depth) and rebuild the
        agent's history from the stored turns. Returns the slots whose replay failed; those episodes are
        marked aborted.

        The env is deterministic per (split, seed), so the replay must reproduce the stored trajectory:
        the same reward at every step and, after every step but the last, the observation the next
        stored turn saw. A replay that differs (a nondeterministic env, a prefix from another env), ends
        the episode early, or loses its worker fails: the continuation would start from a state the
        prefix never reached, and its return would be credited to the wrong steps."""
        failed: list[int] = []
        live = dict(prefixes)
        depth = 0
        while live:
            actions = {slot: prefix[depth].action for slot, prefix in live.items()}
            steps = self.pool.step(actions)
            self.num_replayed_steps += len(actions)
            for slot in list(live):
                prefix, st = live[slot], states[slot]
                obs, reward, done, info = steps[slot]
                last = depth == len(prefix) - 1
                expected_obs = None if last else prefix[depth + 1].observation
                mismatch = abs(float(reward) - prefix[depth].reward) > 1e-6 or (
                    expected_obs is not None and obs != expected_obs)
                if mismatch or done or info.get("aborted"):
                    reason = ("worker lost" if info.get("aborted") else "the episode ended" if done
                              else "the env did not reproduce the stored turn")
                    st.episode.aborted = True
                    st.episode.replay_mismatches += int(mismatch)
                    self.num_replay_mismatches += int(mismatch)
                    st.episode.final_info = {"replay_failed_at": depth + 1, "replay_mismatch": mismatch,
                                             "replay_done_early": bool(done), "aborted": bool(info.get("aborted"))}
                    log.warning("replaying a %d-step prefix (seed %d) failed at step %d: %s", len(prefix),
                                st.episode.spec.seed, depth + 1, reason)
                    failed.append(slot)
                    del live[slot]
                elif last:
                    st.history = [(t.observation, t.action if t.action is not None else t.response.strip()[:200])
                                  for t in prefix]
                    st.observation, st.admissible = obs, info.get("admissible_actions")
                    st.state_key = info.get("state_key")
                    st.episode.prefix_steps = len(prefix)
                    del live[slot]
            depth += 1
        return failed


def episode_metrics(episodes: list[Episode]) -> dict[str, float]:
    """The per-env evaluation figures of summary.json (success rate 0..1)."""
    n = len(episodes)
    if n == 0:
        return {"success_rate": 0.0, "episodes": 0, "avg_steps": 0.0, "avg_return": 0.0, "valid_action_ratio": 0.0}
    turns = sum(e.steps for e in episodes)
    valid = sum(1 for e in episodes for t in e.turns if not t.invalid)
    return {
        "success_rate": sum(e.success for e in episodes) / n,
        "episodes": n,
        "avg_steps": turns / n,
        "avg_return": sum(e.ret for e in episodes) / n,
        "valid_action_ratio": valid / turns if turns else 0.0,
        "format_ok_ratio": sum(1 for e in episodes for t in e.turns if t.format_ok) / turns if turns else 0.0,
        "aborted": sum(e.aborted for e in episodes),
        "avg_obs_chars": sum(len(t.observation) for e in episodes for t in e.turns) / turns if turns else 0.0,
    }
