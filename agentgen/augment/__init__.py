"""State-information augmentation (papers.md A, section 6): goal-irrelevant distractors added to the
observations the agent sees, while transitions, rewards and admissible actions stay the real env's.

- ``env_factory`` tells the env pool what to build for an env config, an ``augment=`` config and a split:
  the plain env, or ``AugmentedEnv`` around it;
- ``settings``: the ``augment`` config group, checked (eps per env, prob, apply_to, seed, ...);
- ``wrapper.AugmentedEnv``: the wrapper, around the augmenter the env's plugin names (its
  ``agentgen/envs/<env>/augment.py``, an ``agentgen.envs.distractors.Augmenter``).
"""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from agentgen.augment.settings import AugmentSettings, parse_settings, validate_augment

WRAPPER_TARGET = "agentgen.augment.wrapper:AugmentedEnv"


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


def env_factory(
    name: str, env_cfg, augment_cfg, split: str, seed: int, *, force: bool = False
) -> tuple[str, dict[str, Any]]:
    """(env target, kwargs) for the pool: the plain env when augmentation is off for this env or split,
    else the augmenting wrapper. ``split`` is the job's: "train" (RL, SFT data) or "test" (evaluation),
    matched against ``augment.apply_to``; ``force`` ignores apply_to (profiling an augmented env).
    ``seed`` (the job's) seeds the distractors unless ``augment.seed`` is set."""
    settings = parse_settings(augment_cfg, default_seed=seed)
    target = str(env_cfg.get("name", name)) if hasattr(env_cfg, "get") else name
    kwargs = env_kwargs(env_cfg)
    if not settings.enabled or settings.eps_for(target) is None:
        return target, kwargs
    if not force and not settings.applies_to_split(split):
        return target, kwargs
    return WRAPPER_TARGET, {"inner": target, "inner_kwargs": kwargs, "augment": settings.as_dict()}


__all__ = [
    "WRAPPER_TARGET",
    "AugmentSettings",
    "env_factory",
    "env_kwargs",
    "parse_settings",
    "validate_augment",
]
