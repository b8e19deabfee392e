"""``AugmentedEnv``: an environment whose observations carry goal-irrelevant distractors.

It holds the real environment (``inner``) and forwards everything to it: transitions, rewards,
success, admissible actions, the expert and the step limit are the inner env's own. Only the
observation strings returned by ``reset`` and ``step`` change (papers.md A section 6: s' =
Augment(s, delta, eps); "only the agent's input changes"). The env pool builds it through the
``EnvFactory`` that ``agentgen.augment.env_factory`` makes: ``inner`` (the plain env's factory) and ``augment``
(the job's ``AugmentSettings``, parsed once).

Per episode: whether the trajectory is augmented is drawn once from (augment seed, split, env seed)
with probability ``prob``; distractors are drawn from (augment seed, split, env seed, step), or step 0
throughout with ``resample: episode``. ``info["augmented"]`` says which it was.
"""

from __future__ import annotations

from typing import Any

from agentgen.augment.seeding import DISTRACTOR_STREAM, episode_augmented, stream
from agentgen.augment.settings import AugmentSettings
from agentgen.envs import TextEnv, env_class, env_names, registry
from agentgen.envs.distractors import Augmenter, Injection
from agentgen.envs.factory import EnvFactory


def _inner_factory(inner: EnvFactory | str, inner_kwargs: dict | None) -> EnvFactory:
    """The inner env's factory; a registry name with ``inner_kwargs`` (tests, scripts) makes one."""
    if isinstance(inner, EnvFactory):
        return inner
    if inner not in env_names():
        raise ValueError(f"AugmentedEnv: unknown inner environment {inner!r}; valid: {', '.join(env_names())}")
    return EnvFactory(inner, env_class(inner), dict(inner_kwargs or {}))


class AugmentedEnv(TextEnv):
    """The inner env with augmented observations (see the module docstring)."""

    name = "augmented"

    def __init__(
        self,
        split: str = "train",
        inner: EnvFactory | str = "",
        inner_kwargs: dict | None = None,
        augment: AugmentSettings | None = None,
    ):
        if not inner:
            raise ValueError(f"AugmentedEnv needs inner=<environment name>; valid: {', '.join(env_names())}")
        if augment is not None and not isinstance(augment, AugmentSettings):
            raise TypeError(f"AugmentedEnv: augment must be AugmentSettings (agentgen.augment.parse_settings), "
                            f"not {type(augment).__name__}")
        env = _inner_factory(inner, inner_kwargs)(split)
        super().__init__(split=split, max_steps=env.max_steps, reward=env.reward_spec)
        self.inner = env
        self.name = env.name
        self.settings = augment or AugmentSettings()
        eps = self.settings.eps_for(env.name)
        self.augmenter: Augmenter | None = (
            augmenter_for(env.name, eps, self.settings.webshop_alpha)
            if self.settings.enabled and eps
            else None
        )
        self.episode_augmented = False
        self.raw_observation = ""  # the inner env's own observation (what transitions are based on)
        self.last_distractors: list[str] = []  # distractors added to the last observation

    # ----------------------------------------------------------------- protocol
    def reset(self, seed: int) -> tuple[str, dict[str, Any]]:
        obs, info = self.inner.reset(seed)
        self._sync()
        self.episode_augmented = self.augmenter is not None and episode_augmented(
            self.settings.prob, self.settings.seed, self.split, seed
        )
        info["augmented"] = self.episode_augmented
        return self._augment(obs), info

    def step(self, action: str | None) -> tuple[str, float, bool, dict[str, Any]]:
        obs, reward, done, info = self.inner.step(action)
        self._sync()
        info["augmented"] = self.episode_augmented
        return self._augment(obs), reward, done, info

    def _reset(self, seed: int):
        raise TypeError("AugmentedEnv.reset delegates to the inner environment; _reset is never used")

    def _step(self, action: str):
        raise TypeError("AugmentedEnv.step delegates to the inner environment; _step is never used")

    def admissible_actions(self) -> list[str] | None:
        return self.inner.admissible_actions()

    def task_description(self) -> str:
        return self.inner.task_description()

    def instruction(self) -> str:
        return self.inner.instruction()

    def expert_action(self) -> str | None:
        return self.inner.expert_action()

    def expert_thought(self) -> str | None:
        return self.inner.expert_thought()

    def close(self) -> None:
        self.inner.close()

    # ----------------------------------------------------------------- internals
    def _sync(self) -> None:
        """Mirror the inner env's episode bookkeeping (callers read steps / done / success here)."""
        inner = self.inner
        self.steps, self.success, self.done, self.seed = inner.steps, inner.success, inner.done, inner.seed

    def _augment(self, obs: str) -> str:
        self.raw_observation = obs
        if not self.episode_augmented:
            self.last_distractors = []
            return obs
        step = self.inner.steps if self.settings.resample == "step" else 0
        rng = stream(self.settings.seed, self.split, self.seed, step, DISTRACTOR_STREAM)
        out: Injection = self.augmenter.augment(obs, self.inner, rng)
        self.last_distractors = list(out.distractors)
        self._last_obs = out.text
        return out.text

    def __getattr__(self, name: str) -> Any:
        """Other public attributes and methods (``room``, ``gold_actions()``, ``valid_actions()``, ...)
        are the inner env's, so pool calls and analysis code work unchanged."""
        inner = self.__dict__.get("inner")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(inner, name)


def augmenter_for(env_name: str, eps: float, webshop_alpha: float = 1.0) -> Augmenter:
    """The augmenter env ``env_name``'s plugin declares (agentgen/envs/<env>/augment.py for agentgen's own)."""
    return registry.augmenter_class(env_name)(eps, webshop_alpha=webshop_alpha)
