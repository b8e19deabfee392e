"""``EnvFactory``: what an env pool builds, as one picklable object (the class by reference, plain keywords).

The caller decides what an env slot holds, the plain env or a wrapper around it (state augmentation,
``agentgen.augment``), and hands the pool a factory; the pool and its worker processes only call it. So the
pool names no class above it by a string: the import graph import-linter checks is the one that runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentgen.envs.base import TextEnv


@dataclass(frozen=True)
class EnvFactory:
    name: str  # the env's registry name (logs, episode specs, reports)
    env_class: type  # a TextEnv subclass: the env's own, or a wrapper whose kwargs hold an ``inner`` factory
    kwargs: dict[str, Any] = field(default_factory=dict)  # plain, picklable constructor keywords (no split)

    def __call__(self, split: str) -> TextEnv:
        return self.env_class(split=split, **self.kwargs)

    @property
    def base(self) -> EnvFactory:
        """The env under any wrappers (its class answers which optional methods the env has)."""
        inner = self.kwargs.get("inner")
        return inner.base if isinstance(inner, EnvFactory) else self
