"""The records of played episodes: what the episode runner produces (``agentgen.rollout.runner``) and the
trainer, evaluation and SFT data read. Plain data at the bottom of the import graph, so that the trainer
needs nothing of the rollout engines."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


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
    user: str = ""  # the user message of the turn's prompt (before any token truncation)
    sampler_logprobs: list[float] | None = None  # the rollout engine's log-prob of each response token
    penalty: float = 0.0  # the invalid-action penalty included in ``reward`` (the env's info["invalid_penalty"])
    # the weights that generated it: the number of updates they had seen (RL step k's rollouts of a synchronous
    # run: k); trainer.max_staleness bounds step - weight_version (agentgen.rollout.ahead)
    weight_version: int | None = None


@dataclass
class EpisodeSpec:
    """An episode to play. ``meta["sampling_seed"]`` (set by evaluation) fixes the model's draws in it: each
    turn samples from a seed derived from it and the turn's index (``turn_seed``)."""

    env: str
    seed: int
    group: int = 0  # episodes sharing a group id are compared by GRPO-style baselines
    meta: dict[str, Any] = field(default_factory=dict)


def derive_seed(*parts: Any) -> int:
    """A 63-bit seed from ``parts`` (ints, strings), stable across processes and Python versions (unlike
    ``hash``): the same parts always give the same seed, different parts independent-looking ones."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def turn_seed(spec: EpisodeSpec, turn: int) -> int | None:
    """The sampling seed of turn ``turn`` (0-based, replayed prefix turns counted) of an episode whose spec
    carries a ``sampling_seed``; None when it does not (fresh randomness)."""
    base = spec.meta.get("sampling_seed")
    return None if base is None else derive_seed(int(base), int(turn))


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
    augmented: bool = False  # the env showed this episode distractors (``augment``; decided at reset)
    prefix_steps: int = 0
    replay_mismatches: int = 0  # 1 when the replay did not reproduce the prefix (the episode is aborted)

    @property
    def ret(self) -> float:
        """Return of the generated turns (a continuation's prefix rewards are the prefix's own)."""
        return sum(t.reward for t in self.turns)

    @property
    def steps(self) -> int:
        return len(self.turns)


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
