"""Environments: ``make(name, split=..., **cfg)`` builds any agentgen environment.

Which envs exist is the registry's answer (``agentgen.envs.registry``): each env package declares itself
with an ``EnvPlugin`` (agentgen's own in ``agentgen/envs/<env>/plugin.py``, others through the entry point
group ``agentgen.envs``). Imports are lazy so that, for example, Sokoban runs on a machine without Java.
"""

from __future__ import annotations

from typing import Any

from agentgen.envs import registry
from agentgen.envs.base import SPLITS, RewardSpec, TextEnv
from agentgen.envs.plugin import EnvPlugin


def env_class(name: str) -> type[TextEnv]:
    return registry.env_class(name)


def env_names() -> tuple[str, ...]:
    """Every registered env (in-tree and third-party), in listing order."""
    return registry.names()


def make(name: str, split: str = "train", **cfg: Any) -> TextEnv:
    """Build environment ``name`` for ``split`` ("train" or "test"); ``cfg`` are the constructor
    keywords (``max_steps``, ``reward`` and the env's own parameters, i.e. conf/env/<name>.yaml)."""
    return env_class(name)(split=split, **cfg)


def __getattr__(name: str) -> Any:
    """``ENV_NAMES`` and ``REGISTRY`` (name -> "module:Class"), read from the registry when asked."""
    if name == "ENV_NAMES":
        return registry.names()
    if name == "REGISTRY":
        return {n: p.env for n, p in registry.plugins().items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["make", "env_class", "env_names", "registry", "EnvPlugin", "SPLITS", "RewardSpec", "TextEnv"]
