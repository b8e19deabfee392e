"""``EnvPlugin``: what an environment package declares about itself, so that adding an env touches no other
part of agentgen. An in-tree env has it as ``PLUGIN`` in ``agentgen/envs/<env>/plugin.py``; a third-party
package exposes one through the entry point group ``agentgen.envs`` (see ``agentgen.envs.registry``).

The descriptor names its classes as "module:Class" strings, so reading it imports nothing heavy (no JVM,
no TextWorld): the env and its augmenter are imported when first built."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentgen.errors import ConfigError


def load_target(target: str) -> Any:
    """The object a "package.module:Name" string names."""
    module, _, attr = target.partition(":")
    if not module or not attr:
        raise ValueError(f"{target!r} is not a 'package.module:Name' target")
    return getattr(importlib.import_module(module), attr)


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], Any]:
    """A package's module ``__getattr__`` (PEP 562) that imports each exported name from its submodule on first
    use (``exports``: name -> submodule), so the registry can read the package's ``plugin.py`` without loading the
    env (its solver, search index or JVM)."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def require(cond: bool, msg: str) -> None:
    """For ``validate_params`` hooks: raise the launcher's ConfigError (one paragraph, exit code 2)."""
    if not cond:
        raise ConfigError(msg)


@dataclass(frozen=True)
class EnvPlugin:
    name: str  # the env's name: env=<name>, eval.envs, summary keys
    title: str  # how reports write it ("ALFWorld")
    env: str  # "module:Class" of its TextEnv
    augmenter: str | None = None  # "module:Class" of its distractor Augmenter (agentgen.envs.distractors); None: none
    # validate_params(kwargs, split): the env's own parameter rules, run before any job starts; ``kwargs`` are
    # the constructor keywords (max_steps, reward and the yaml's params). Raise ConfigError (or ValueError /
    # TypeError, which become one) for a bad value. None: only the parameter names are checked.
    validate_params: Callable[[dict[str, Any], str], None] | None = None
    # a third-party env's yaml, <dir>/env/<name>.yaml ("# @package env.<name>" header): Hydra composes it
    # for env=<name>. None: agentgen's own conf/env/<name>.yaml.
    conf: str | Path | None = None
    eval_by_default: bool = False  # in eval.envs by default (the study's four envs)
    order: int = 100  # position in listings and error messages (the study's envs first, in its order)

    def env_class(self) -> type:
        return load_target(self.env)

    def augmenter_class(self) -> type | None:
        return load_target(self.augmenter) if self.augmenter else None


def validate_by_building(env_target: str) -> Callable[[dict[str, Any], str], None]:
    """A ``validate_params`` hook for an env that is cheap to build: its constructor checks every parameter."""

    def check(kwargs: dict[str, Any], split: str) -> None:
        load_target(env_target)(split=split, **kwargs)

    return check


__all__ = ["EnvPlugin", "load_target", "require", "validate_by_building"]
