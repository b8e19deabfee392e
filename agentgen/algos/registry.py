"""The algorithms agentgen trains with, by name: the trainer dispatches on ``cfg.algo.name`` through this table.

Each algorithm is one module (see ``agentgen.algos.base``); adding one means writing its module, listing it in
``MODULES``, adding ``conf/algo/<name>.yaml`` with the same keys (extending ``<name>_schema``, the dataclass this
module puts in Hydra's ConfigStore, so types are checked at compose time), and its tests.
``validate_algo_config`` checks an ``algo`` config against the algorithm's typed dataclass (missing, unknown and
wrongly typed keys, for configs built without Hydra) and then its values, with one message naming the bad key,
its value and the valid values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from agentgen.algos import gigpo, grpo, gspo, ppo, reinforce_pp, rloo, tree_grpo
from agentgen.algos.base import FILTER_GROUPS_BY, AlgoConfig, Algorithm, ChainConfig, GroupConfig, check_common
from agentgen.algos.tree_search import STEP_ADVANTAGE_MODES

MODULES = (grpo, rloo, ppo, reinforce_pp, tree_grpo, gigpo, gspo)
ALGORITHMS: dict[str, Algorithm] = {m.ALGORITHM.name: m.ALGORITHM for m in MODULES}
GROUP_ALGORITHMS = tuple(n for n, a in ALGORITHMS.items() if issubclass(a.config, GroupConfig))
SCHEMA_SUFFIX = "_schema"  # conf/algo/<name>.yaml's defaults list: [<name>_schema, _self_]


def register_schemas() -> None:
    """Each algorithm's config dataclass as ``algo/<name>_schema`` in Hydra's ConfigStore. conf/algo/<name>.yaml
    extends it, so an unknown or wrongly typed ``algo.*`` override fails when the config is composed, as the
    rest of the config does against ``agentgen_schema``. Done on import: whatever composes imports this."""
    for name, algorithm in ALGORITHMS.items():
        ConfigStore.instance().store(group="algo", name=f"{name}{SCHEMA_SUFFIX}", node=algorithm.config,
                                     provider="agentgen")


register_schemas()


def get_algo(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise KeyError(f"unknown algorithm {name!r}; valid algorithms: {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]


def typed_config(cfg: Mapping[str, Any]) -> tuple[Algorithm, AlgoConfig]:
    """The algorithm and its config as its dataclass; missing, unknown or wrongly typed keys fail here."""
    algorithm = get_algo(cfg.get("name"))
    name = algorithm.name
    missing = [k for k in algorithm.required_keys() if k not in cfg]
    if missing:
        raise ValueError(f"algo config {name!r} is missing keys {missing}; see conf/algo/{name}.yaml")
    known = {f.name for f in fields(algorithm.config)}
    for key in cfg:
        if key in known:
            continue
        if key == "step_weight" and not issubclass(algorithm.config, ChainConfig):
            raise ValueError(f"algo.step_weight is not a {name!r} setting; its steps are weighted by "
                             f"algo.step_advantage ({', '.join(STEP_ADVANTAGE_MODES)})")
        if key in ("filter_groups", "max_sampling_rounds") and not issubclass(algorithm.config, GroupConfig):
            if key == "filter_groups" and cfg[key] is not None:
                raise ValueError(f"algo.filter_groups={cfg[key]} needs an algorithm that compares independent "
                                 f"rollouts of a group ({', '.join(GROUP_ALGORITHMS)}); {name!r} does not")
            continue  # dynamic sampling off: nothing to honour
        raise ValueError(f"algo.{key} is not a key of algorithm {name!r}; its keys: {', '.join(sorted(known))} "
                         f"(conf/algo/{name}.yaml)")
    plain = {k: v for k, v in cfg.items() if k in known}
    try:
        typed = OmegaConf.merge(OmegaConf.structured(algorithm.config), plain)
    except OmegaConfBaseException as err:
        key = getattr(err, "full_key", "") or "?"
        raise ValueError(f"algo.{key}={plain.get(key.split('.')[-1])!r} has the wrong type for {name!r}: "
                         f"{err.msg if hasattr(err, 'msg') else err}") from None
    return algorithm, OmegaConf.to_object(typed)


def validate_algo_config(cfg: Mapping[str, Any]) -> Algorithm:
    """Check an ``algo`` config (conf/algo/<name>.yaml, possibly overridden) and return its algorithm.
    Fails with one clear message naming the bad key, its value and the valid values."""
    algorithm, typed = typed_config(cfg)

    def bad(key: str, valid: str) -> ValueError:
        return ValueError(f"algo.{key}={getattr(typed, key)!r} is invalid for {algorithm.name!r}; valid values: "
                          f"{valid}")

    check_common(typed, algorithm, bad)
    algorithm.check(typed, bad)
    return algorithm


__all__ = ["ALGORITHMS", "FILTER_GROUPS_BY", "GROUP_ALGORITHMS", "MODULES", "get_algo",
           "register_schemas", "typed_config", "validate_algo_config"]
