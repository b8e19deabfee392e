"""The environment protocol every agentgen environment follows.

An environment is a multi-turn text game. The agent sees `observation` strings and answers with one
action string per turn. Rewards follow the generalization-tax study (papers.md, section A): +10 on
success, 0 on failure, -0.1 per invalid action, with the values taken from config.

`info` always carries:
- ``success`` (bool): the task is solved (sticky once reached);
- ``invalid_action`` (bool): the last action could not be executed (state unchanged, penalty paid);
- ``invalid_penalty`` (float, from ``step``): the part of this step's reward that is the invalid-action penalty
  (0 for a valid action), so an algorithm can apply it apart from the task reward (GiGPO's ``invalid_penalty``);
- ``admissible_actions`` (list[str] | None): the valid actions now, or None where there are too many;
- ``task`` (str): the goal in words (for the prompt);
- ``state_key`` (hashable): the env's canonical key of the state now (``state_key()``): equal keys mean the
  same state, whatever distractors an augmentation adds to the observation (GiGPO's anchor states);
plus, from ``step``: ``truncated`` (bool, the step limit ended the episode) and ``raw_reward`` (the
engine's own reward or score, for logging).

Instances: an environment is built for one split ("train" or "test"); ``reset(seed)`` picks the
instance for that seed deterministically, and the two splits never share an instance.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

SPLITS = ("train", "test")


@dataclass(frozen=True)
class RewardSpec:
    """Reward scheme of the study: +success on solving, failure at the end otherwise, invalid per bad action."""

    success: float = 10.0
    failure: float = 0.0
    invalid: float = -0.1


class TextEnv(ABC):
    """Base class: subclasses implement ``_reset`` / ``_step``; this class keeps the step count, the
    step limit, the reward scheme and the info keys uniform across environments."""

    name: str = "base"

    def __init__(self, split: str = "train", max_steps: int = 50, reward: RewardSpec | dict | None = None):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {max_steps}")
        self.split = split
        self.max_steps = int(max_steps)
        self.reward_spec = reward if isinstance(reward, RewardSpec) else RewardSpec(**(reward or {}))
        self.steps = 0
        self.success = False
        self.done = True
        self.seed: int | None = None
        self._last_obs = ""

    # ----------------------------------------------------------------- protocol
    def reset(self, seed: int) -> tuple[str, dict[str, Any]]:
        self.steps = 0
        self.success = False
        self.done = False
        self.seed = int(seed)
        obs, info = self._reset(int(seed))
        self._last_obs = obs
        return obs, self._complete_info(info, invalid=False)

    def step(self, action: str | None) -> tuple[str, float, bool, dict[str, Any]]:
        """Apply ``action``. ``None`` means the agent's answer had no parseable action: an invalid action
        (penalty paid, step counted, state unchanged) that never reaches the engine."""
        if self.done:
            raise RuntimeError(f"{self.name}: step() called on a finished episode; call reset(seed) first")
        self.steps += 1
        if action is None:
            obs, solved, invalid, info = self._last_obs, False, True, {"format_error": True}
        else:
            obs, solved, invalid, info = self._step(action)
        self._last_obs = obs
        self.success = self.success or bool(solved)
        failed = bool(info.pop("failed", False))  # the env ended the episode as a failure (e.g. wrong focus)
        truncated = self.steps >= self.max_steps and not self.success
        done = self.success or failed or truncated
        reward = 0.0
        if invalid:
            reward += self.reward_spec.invalid
        if self.success and solved:
            reward += self.reward_spec.success
        elif done and not self.success:
            reward += self.reward_spec.failure
        self.done = done
        info["truncated"] = truncated and not failed
        info["invalid_penalty"] = float(self.reward_spec.invalid) if invalid else 0.0
        return obs, reward, done, self._complete_info(info, invalid=invalid)

    def expert_action(self) -> str | None:
        """The expert's next action from the current state (None if the expert has none)."""
        return None

    def expert_thought(self) -> str | None:
        """A short, honest reasoning text for the expert's next action, derived from what the expert
        actually computed (e.g. the solver's plan). Used as the <think> text of SFT data when think=true."""
        return None

    def state_key(self) -> Any:
        """A hashable key of the current state: equal keys = the same state. The default is the env's own
        observation text (never the augmented one: ``AugmentedEnv`` delegates to its inner env), which is what
        verl-agent's GiGPO groups by; an env whose observation omits state, or repeats it verbatim for
        different states, overrides this."""
        return self._last_obs

    def close(self) -> None:  # noqa: B027 - optional hook: most envs hold nothing to release
        """Release engine resources (JVMs, servers)."""

    # ----------------------------------------------------------------- for subclasses
    @abstractmethod
    def _reset(self, seed: int) -> tuple[str, dict[str, Any]]:
        """Build instance ``seed`` of this split; return (observation, info with at least ``task``)."""

    @abstractmethod
    def _step(self, action: str) -> tuple[str, bool, bool, dict[str, Any]]:
        """Apply ``action``; return (observation, solved, invalid, info). Put ``failed=True`` in info
        to end the episode as a failure."""

    def admissible_actions(self) -> list[str] | None:
        """Valid actions now, or None where the env has too many to list."""
        return None

    def task_description(self) -> str:
        return ""

    def instruction(self) -> str:
        """Rules of the game and the action format, shown once at the top of every prompt."""
        return ""

    # ----------------------------------------------------------------- helpers
    def _complete_info(self, info: dict[str, Any], invalid: bool) -> dict[str, Any]:
        info.setdefault("task", self.task_description())
        info["success"] = bool(self.success)
        info["invalid_action"] = bool(invalid)
        if "admissible_actions" not in info:
            info["admissible_actions"] = None if self.done else self.admissible_actions()
        info.setdefault("steps", self.steps)
        info["state_key"] = self.state_key()
        return info

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
