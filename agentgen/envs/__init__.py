"""Environment registry: ``make(name, split=..., **cfg)`` builds any agentgen environment.

Imports are lazy so that, for example, Sokoban runs on a machine without Java.
"""

from __future__ import annotations

import importlib
from typing import Any

from agentgen.envs.base import SPLITS, RewardSpec, TextEnv

# name -> "module:Class"; conf/env/<name>.yaml configures each.
REGISTRY: dict[str, str] = {
    "sokoban": "agentgen.envs.sokoban:SokobanEnv",
    "alfworld": "agentgen.envs.alfworld:AlfWorldEnv",
    "sciworld": "agentgen.envs.sciworld:SciWorldEnv",
    "webshop": "agentgen.envs.webshop:WebShopEnv",
}
ENV_NAMES = tuple(REGISTRY)


def env_class(name: str) -> type[TextEnv]:
    if name not in REGISTRY:
        raise KeyError(f"unknown environment {name!r}; valid environments: {', '.join(ENV_NAMES)}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make(name: str, split: str = "train", **cfg: Any) -> TextEnv:
    """Build environment ``name`` for ``split`` ("train" or "test"); ``cfg`` are the constructor
    keywords (``max_steps``, ``reward`` and the env's own parameters, i.e. conf/env/<name>.yaml)."""
    return env_class(name)(split=split, **cfg)


__all__ = ["make", "env_class", "REGISTRY", "ENV_NAMES", "SPLITS", "RewardSpec", "TextEnv"]
