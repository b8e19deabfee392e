"""Plays episodes: the one loop through which every policy meets the environments.

RL rollouts, evaluation, the expert's SFT data and profiling all run here, so they are guaranteed to build the
same prompts. Each turn, the ``Policy`` (``agentgen.rollout.policy``: the model, the env's scripted expert, a
random policy) acts for every active episode at once (the model generates them as one batch), the actions are
stepped in the env pool, and finished episodes free their slot for the next pending one. The result is a list
of ``Episode`` records holding every turn's prompt, answer and (for the model) tokens, ready for training.

An episode can also *continue* an earlier one (Tree-GRPO expansions): ``spec.meta["prefix"]`` holds the
earlier episode's first turns; the runner resets the env with the same seed, replays their actions
(restoring the env state without generating anything), rebuilds the agent's history from the stored
turns, and generates only the continuation. Replays of many episodes advance together, one action per
batched pool step, so worker pools stay busy.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from agentgen.console import progress
from agentgen.episode import Episode, EpisodeSpec, Turn, episode_metrics

__all__ = ["AgentState", "Decision", "Episode", "EpisodeRunner", "EpisodeSpec", "Policy", "Turn", "episode_metrics"]

log = logging.getLogger(__name__)


@dataclass
class AgentState:
    """What a policy sees of one running episode: its pool slot, the env's instruction, the current observation
    and admissible actions, and the (observation, action) pairs so far."""

    slot: int
    episode: Episode
    instruction: str
    observation: str
    admissible: list[str] | None
    history: list[tuple[str, str]] = field(default_factory=list)
    state_key: Any = None


@dataclass
class Decision:
    """A policy's answer for one episode's turn: the text it gave, the action parsed from it and, for a model,
    the prompt and answer tokens (what the trainer trains on)."""

    response: str
    action: str | None
    format_ok: bool = True
    user: str = ""
    prompt_ids: list[int] = field(default_factory=list)
    response_ids: list[int] = field(default_factory=list)
    capped: bool = False
    logprobs: list[float] | None = None  # the sampler's log-probability of each response token, when it gives them
    aborted: str | None = None  # why the generation was abandoned (rollout.generation_timeout): the episode aborts
    weight_version: int | None = None  # the generator's weight version that produced it (Turn.weight_version)


class Policy(Protocol):
    def act(self, states: list[AgentState]) -> list[Decision | None]:
        """One decision per state, in order; None when the policy has nothing to do there (the episode ends,
        failed: an expert without a plan, a random policy without actions)."""


class EpisodeRunner:
    """Runs episodes of one environment through an env pool and a policy.

    ``overlap=True`` (``rollout.env_overlap``, a model policy only) splits the slots into two waves by parity:
    while one wave's actions step in the env pool (on a background thread), the policy acts for the other, so
    a slow engine's steps hide behind generation. The resets of new episodes go out in the same background
    request (before its step), so they hide too; such an episode joins when the request is collected and misses
    one turn of its wave's acting. Each act is half the batch; with fast envs that costs more than it hides,
    hence off for them. The pool still serves one request at a time. Policies that ask the pool themselves (the
    expert, the random policy) run without overlap."""

    def __init__(self, pool, policy: Policy, max_turns: int, overlap: bool = False):
        self.pool = pool
        self.policy = policy
        self.max_turns = max_turns
        self.waves = 2 if overlap else 1
        self.num_replayed_steps = 0  # env steps spent restoring continuation prefixes
        self.num_replay_mismatches = 0  # continuations aborted because the replay differed from the prefix
        # wall time in the policy's act, waiting on the env pool, and env steps hidden behind the policy's act
        self.seconds = {"policy": 0.0, "env": 0.0, "env_hidden": 0.0}

    def run(self, specs: list[EpisodeSpec], desc: str | None = None,
            on_episode: Callable[[Episode], None] | None = None) -> list[Episode]:
        # a transient bar when ``desc`` names one (rollouts and evaluations have their phase's bars instead)
        bar = progress(len(specs), desc or "episodes", unit="episode", leave=False, show=None if desc else False)
        slots = _SlotLoop(self, specs, bar, on_episode)
        if self.waves == 1:
            slots.one_wave()
        else:
            slots.two_waves()
        bar.close()
        return [r for r in slots.results if r is not None]

    def _replay(self, prefixes: dict[int, list[Turn]], states: dict[int, AgentState]) -> list[int]:
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
            t0 = time.perf_counter()
            steps = self.pool.step(actions)
            self.seconds["env"] += time.perf_counter() - t0
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


class _SlotLoop:
    """One ``EpisodeRunner.run``: the pool's slots and the episodes in them (pending, free, active, finished),
    the steps every loop shares as methods, and the two loops, ``one_wave`` and ``two_waves``."""

    def __init__(self, runner: EpisodeRunner, specs: list[EpisodeSpec], bar,
                 on_episode: Callable[[Episode], None] | None):
        self.runner, self.pool, self.bar, self.on_episode = runner, runner.pool, bar, on_episode
        self.seconds = runner.seconds
        self.pending = deque(enumerate(specs))
        self.free = list(range(self.pool.num_slots))[::-1]
        self.active: dict[int, tuple[int, AgentState]] = {}
        self.results: list[Episode | None] = [None] * len(specs)

    # ---------------------------------------------------------------- the steps both loops take
    def finish(self, slot: int) -> None:
        i, st = self.active.pop(slot)
        self.results[i] = st.episode
        self.free.append(slot)
        self.bar.update(1)
        if self.on_episode:
            self.on_episode(st.episode)

    def take_pending(self) -> dict[int, tuple[int, EpisodeSpec]]:
        """The next pending episodes, each given a free slot (neither free nor active until started)."""
        starting: dict[int, tuple[int, EpisodeSpec]] = {}
        while self.free and self.pending:
            starting[self.free.pop()] = self.pending.popleft()
        return starting

    def reset_slots(self, starting: dict[int, tuple[int, EpisodeSpec]]) -> tuple[dict, dict]:
        """(first observations, instructions) of the episodes ``starting``: the pool's work of a start."""
        if not starting:
            return {}, {}
        resets = self.pool.reset({slot: spec.seed for slot, (_, spec) in starting.items()})
        return resets, self.pool.call(list(starting), "instruction")

    def activate(self, starting: dict[int, tuple[int, EpisodeSpec]], resets: dict, instructions: dict) -> None:
        """Make the reset episodes active (and restore continuation prefixes, which needs the pool idle)."""
        for slot, (obs, info) in resets.items():
            i, spec = starting[slot]
            ep = Episode(spec=spec, task=info.get("task", ""), augmented=bool(info.get("augmented", False)))
            self.active[slot] = (i, AgentState(slot, ep, instructions[slot] or "", obs,
                                               info.get("admissible_actions"), state_key=info.get("state_key")))
        prefixes = {slot: spec.meta["prefix"] for slot, (_, spec) in starting.items() if spec.meta.get("prefix")}
        for slot in self.runner._replay(prefixes, {slot: self.active[slot][1] for slot in prefixes}):
            self.finish(slot)  # the replay could not restore the state: aborted, the slot is free again

    def start_now(self, starting: dict[int, tuple[int, EpisodeSpec]]) -> None:
        """Reset and activate ``starting`` here and now, the wait counted as env time (the pool must be idle)."""
        t0 = time.perf_counter()
        resets, instructions = self.reset_slots(starting)
        self.seconds["env"] += time.perf_counter() - t0
        self.activate(starting, resets, instructions)

    def start_pending(self) -> None:
        """Start the next pending episodes in the free slots, here and now (the pool must be idle)."""
        self.start_now(self.take_pending())

    def decide(self, slots: list[int]) -> dict[int, Decision]:
        """The policy's decisions for these slots; the episodes it gives up on end here."""
        t0 = time.perf_counter()
        decisions = dict(zip(slots, self.runner.policy.act([self.active[s][1] for s in slots])))
        self.seconds["policy"] += time.perf_counter() - t0
        for slot in [s for s in slots if decisions[s] is None]:
            self.finish(slot)  # the policy has nothing to do here: the episode ends, failed
        abandoned = [s for s in slots if decisions[s] is not None and decisions[s].aborted]
        if abandoned:
            log.warning("%d episode(s) aborted: %s", len(abandoned), decisions[abandoned[0]].aborted)
        for slot in abandoned:  # its generation was abandoned: aborted, the slot takes the next pending episode
            ep = self.active[slot][1].episode  # says nothing about the policy: the trainer drops it, as a hung env's
            ep.aborted = True
            ep.final_info = {"aborted": True, "abort_reason": decisions[slot].aborted, "generation_aborted": True}
            self.finish(slot)
        return {slot: d for slot, d in decisions.items() if d is not None and not d.aborted}

    def apply(self, acting: dict[int, Decision], steps: dict[int, tuple]) -> None:
        """Record each stepped turn and end the episodes that are done."""
        for slot, d in acting.items():
            st = self.active[slot][1]
            obs, reward, done, info = steps[slot]
            st.episode.turns.append(Turn(d.prompt_ids, d.response_ids, d.response, d.action, float(reward),
                                         st.observation, d.format_ok, bool(info.get("invalid_action", False)),
                                         st.state_key, d.capped, d.user, d.logprobs,
                                         float(info.get("invalid_penalty", 0.0)), d.weight_version))
            st.history.append((st.observation, d.action if d.action is not None else d.response.strip()[:200]))
            st.observation, st.admissible, st.state_key = obs, info.get("admissible_actions"), info.get("state_key")
            ep = st.episode
            if not done and ep.prefix_steps + len(ep.turns) >= self.runner.max_turns:
                done, ep.truncated = True, True
            if done:
                ep.success = bool(info.get("success", False))
                ep.aborted = bool(info.get("aborted", False))
                ep.truncated = ep.truncated or bool(info.get("truncated", False))
                ep.final_info = {k: v for k, v in info.items() if k not in ("admissible_actions", "state_key")}
                self.finish(slot)

    def background(self, actions: dict[int, str], starting: dict) -> tuple[dict, dict, dict, float]:
        """One request's worth of pool work behind the policy's act: new episodes' resets, then a step."""
        t0 = time.perf_counter()
        resets, instructions = self.reset_slots(starting)
        steps = self.pool.step(actions) if actions else {}
        return steps, resets, instructions, time.perf_counter() - t0

    # ---------------------------------------------------------------- the loops
    def one_wave(self) -> None:
        """Act, step, repeat; new episodes start between steps."""
        while self.pending or self.active:
            self.start_pending()
            acting = self.decide(list(self.active)) if self.active else {}
            if acting:
                t0 = time.perf_counter()
                steps = self.pool.step({s: d.action for s, d in acting.items()})
                self.seconds["env"] += time.perf_counter() - t0
                self.apply(acting, steps)

    def two_waves(self) -> None:
        """Wave w acts while a background request steps wave 1-w and resets the slots freed since the last
        request (their episodes join once it is collected, so a new episode misses one turn of its wave's
        acting); then the request is collected and the next one goes out with wave w's actions. The pool serves
        one request at a time. New episodes start in the foreground when nothing is in flight, and when the wave
        acting next would otherwise have no episode to act on (a hidden reset would leave it idle)."""
        waves = self.runner.waves
        inflight: tuple[dict[int, Decision], dict, Future] | None = None
        wave = 0
        with ThreadPoolExecutor(1, thread_name_prefix="env-step") as executor:
            while self.pending or self.active or inflight:
                if inflight is None:
                    self.start_pending()
                busy = inflight[0] if inflight else {}
                mine = [s for s in self.active if s % waves == wave and s not in busy]
                acting = self.decide(mine) if mine else {}
                if inflight is not None:
                    t0 = time.perf_counter()
                    steps, resets, instructions, took = inflight[2].result()
                    waited = time.perf_counter() - t0
                    self.seconds["env"] += waited
                    self.seconds["env_hidden"] += max(0.0, took - waited)
                    self.apply(inflight[0], steps)
                    self.activate(inflight[1], resets, instructions)
                    inflight = None
                starting = self.take_pending() if acting else {}
                after = (wave + 1) % waves
                if starting and not any(s % waves == after for s in self.active):
                    # the wave acting next would have nothing but these new episodes: start them here and now, so
                    # it acts on them while this request steps (as without reset overlap)
                    self.start_now(starting)
                    starting = {}
                if acting:
                    inflight = (acting, starting, executor.submit(
                        self.background, {s: d.action for s, d in acting.items()}, starting))
                wave = (wave + 1) % waves
