"""State-information augmentation (papers.md A, section 6): goal-irrelevant distractors added to the
observations the agent sees, while transitions, rewards and admissible actions stay the real env's.

- ``settings``: the ``augment`` config group, parsed and checked once per job (eps per env, prob, apply_to,
  seed, ...) into ``AugmentSettings``, which travel as they are (frozen, picklable);
- ``env_factory`` gives the env pool what to build for an env config, those settings and a split: an
  ``EnvFactory`` of the plain env, or of ``AugmentedEnv`` around it;
- ``wrapper.AugmentedEnv``: the wrapper, around the augmenter the env's plugin names (its
  ``agentgen/envs/<env>/augment.py``, an ``agentgen.envs.distractors.Augmenter``).
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from agentgen.augment.settings import AugmentSettings, parse_settings, validate_augment
from agentgen.envs import env_class
from agentgen.envs.factory import EnvFactory


def env_kwargs(env_cfg) -> dict[str, Any]:
    """Constructor keywords of an env from its config node (conf/env/<name>.yaml)."""
    reward = (
        OmegaConf.to_container(env_cfg.reward, resolve=True)
        if not isinstance(env_cfg.reward, dict)
        else env_cfg.reward
    )
    params = (
        OmegaConf.to_container(env_cfg.params, resolve=True)
        if not isinstance(env_cfg.params, dict)
        else env_cfg.params
    )
    return {"max_steps": int(env_cfg.max_steps), "reward": dict(reward), **params}


def env_factory(name: str, env_cfg, settings: AugmentSettings, split: str, *, force: bool = False) -> EnvFactory:
    """What the pool builds for env ``name``: the plain env when augmentation is off for this env or split, else
    the augmenting wrapper around it. ``settings`` are the job's, parsed once (``parse_settings``, with the job's
    seed as the distractors' default); ``split`` is the job's: "train" (RL, SFT data) or "test" (evaluation),
    matched against ``augment.apply_to``; ``force`` ignores apply_to (profiling an augmented env)."""
    from agentgen.augment.wrapper import AugmentedEnv  # here: the config checks import this package, not numpy

    target = str(env_cfg.get("name", name)) if hasattr(env_cfg, "get") else name
    plain = EnvFactory(target, env_class(target), env_kwargs(env_cfg))
    if not settings.enabled or settings.eps_for(target) is None:
        return plain
    if not force and not settings.applies_to_split(split):
        return plain
    return EnvFactory(target, AugmentedEnv, {"inner": plain, "augment": settings})


__all__ = [
    "AugmentSettings",
    "env_factory",
    "env_kwargs",
    "parse_settings",
    "validate_augment",
]
