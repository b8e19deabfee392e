"""State-information augmentation (papers.md A, section 6): goal-irrelevant distractors added to the
observations the agent sees. ``env_factory`` tells the env pool what to build for a config."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf


def env_kwargs(env_cfg) -> dict[str, Any]:
    """Constructor keywords of an env from its config node (conf/env/<name>.yaml)."""
    reward = OmegaConf.to_container(env_cfg.reward, resolve=True) if not isinstance(env_cfg.reward, dict) \
        else env_cfg.reward
    params = OmegaConf.to_container(env_cfg.params, resolve=True) if not isinstance(env_cfg.params, dict) \
        else env_cfg.params
    return {"max_steps": int(env_cfg.max_steps), "reward": dict(reward), **params}


def env_factory(name: str, env_cfg, augment_cfg, split: str, seed: int) -> tuple[str, dict[str, Any]]:
    """(env target, kwargs) for the pool: the plain env when augmentation is off."""
    aug = augment_cfg.get("name", "none") if augment_cfg else "none"
    if aug == "none":
        return name, env_kwargs(env_cfg)
    raise ValueError(f"augment={aug!r} is not available yet; valid: none")
