"""The env-config step: the config of an env as a job builds it, from five layers (the env's file or the
training env's node, ``eval.env_overrides``, the chosen difficulty's params, the model's ``env_params``, and
the debug / model caps on steps and answer length). ``resolve_env_configs`` runs it once per job for every
env and split the job builds and stores the result in the config's ``env_configs``: that is what the job
reads, what ``launch.py --cfg job`` prints and what the job writes to ``<output dir>/config.yaml``."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from agentgen.config.schema import EnvConfig
from agentgen.envs.registry import env_conf_file

ENV_CONFIGS = "env_configs"  # the job config's node holding the step's result: {env: {train|test: env config}}


def built_env_config(env_configs: DictConfig | None, name: str, split: str) -> DictConfig | None:
    """The config of env ``name`` for ``split`` ("train" | "test") as the step stored it (a job's
    ``cfg.env_configs``), or None when the step did not store that pair."""
    stored = (env_configs or {}).get(name, {}).get(split)
    return None if stored is None else OmegaConf.merge(OmegaConf.structured(EnvConfig), stored)


def env_config(cfg: DictConfig, name: str, for_eval: bool = False) -> DictConfig:
    """The config of env ``name`` for training (or, ``for_eval``, for the test split): the one stored by
    ``resolve_env_configs`` when the job has run that step, otherwise the step's merge for this env."""
    stored = built_env_config(cfg.get(ENV_CONFIGS), name, "test" if for_eval else "train")
    return stored if stored is not None else merge_env_config(cfg, name, for_eval)


def merge_env_config(cfg: DictConfig, name: str, for_eval: bool = False) -> DictConfig:
    """The five layers, in order: the training env's own node (with the user's overrides) when it is one,
    otherwise conf/env/<name>.yaml; for evaluation, ``eval.env_overrides[name]`` on top (e.g. train on the
    easy split, evaluate on the hard one); the chosen difficulty's params merged in; then the model's
    ``env_params[name]`` for the keys nobody set by hand (a value that differs from the env file's wins);
    last the caps of ``debug.max_steps``, ``debug.max_response_tokens`` and the model's ``max_response_tokens``."""
    if name in cfg.env:
        node = copy.deepcopy(cfg.env[name])
    else:
        node = OmegaConf.merge(OmegaConf.structured(EnvConfig), OmegaConf.load(env_conf_file(name)))
    if for_eval and name in cfg.eval.env_overrides:
        node = OmegaConf.merge(node, cfg.eval.env_overrides[name])
    if node.difficulty != "all":
        if node.difficulty not in node.difficulties:
            raise ValueError(f"env.{name}.difficulty={node.difficulty!r} is invalid; valid: all, "
                             f"{', '.join(node.difficulties)}")
        merged = {**OmegaConf.to_container(node.params, resolve=True),
                  **OmegaConf.to_container(node.difficulties[node.difficulty], resolve=True)}
        with open_dict(node):
            node.params = merged
    model_params = (cfg.model.get("env_params") or {}).get(name)
    if model_params:  # the preset's choice, unless the user set that key (its value differs from the env's file)
        chosen = {k: v for k, v in OmegaConf.to_container(model_params, resolve=True).items()
                  if node.params.get(k) == _env_file_params(name).get(k)}
        with open_dict(node):
            node.params = OmegaConf.merge(node.params, chosen)
    dbg = cfg.get("debug") or {}
    if dbg.get("max_steps"):
        node.max_steps = min(node.max_steps, int(dbg.max_steps))
    if dbg.get("max_response_tokens"):
        node.max_response_tokens = min(node.max_response_tokens, int(dbg.max_response_tokens))
    if cfg.model.get("max_response_tokens"):  # the model preset's own cap (a small model's answers are short)
        node.max_response_tokens = min(node.max_response_tokens, int(cfg.model.max_response_tokens))
    return node


@lru_cache(maxsize=None)
def _env_file_params(name: str) -> dict[str, Any]:
    """conf/env/<name>.yaml's own params: what a key is when nobody (command line, experiment file) set it."""
    return OmegaConf.to_container(OmegaConf.load(env_conf_file(name)).get("params", {}), resolve=True)


def instance_subset(ec, split: str) -> list[int] | None:
    """Seeds of the instances ``env.<name>.instances`` selects ("difficulty.json:easy"), for ``split``."""
    if not ec.get("instances"):
        return None
    path, _, level = str(ec.instances).rpartition(":")
    data = json.loads(Path(path).read_text())
    seeds = data.get(split, {}).get(level)
    if not seeds:
        raise ValueError(f"{path} has no {split!r} instances at level {level!r}; levels there: "
                         f"{', '.join(data.get(split, {}))}")
    return [int(x) for x in seeds]


def built_envs(cfg: DictConfig) -> dict[str, list[str]]:
    """Every env a job builds, with its splits: the training envs (also sequential stages', and SFT's data envs)
    on train, the evaluated envs on test."""
    train = list(cfg.env) + [str(st.get("env")) for st in (cfg.get("stages") or [])]
    if cfg.sft.name != "none":
        train += list(cfg.sft.mixture) + list(cfg.sft.sources)
    out: dict[str, list[str]] = {name: ["train"] for name in dict.fromkeys(train)}
    for name in cfg.eval.envs:
        out.setdefault(str(name), []).append("test")
    return out


def resolve_env_configs(cfg: DictConfig) -> DictConfig:
    """The env-config step, once per job: a copy of ``cfg`` whose ``env_configs`` holds the merged config of every
    env and split the job builds (``merge_env_config``). The job reads these (``env_config``), ``launch.py --cfg
    job`` prints them and the job stores them in ``<output dir>/config.yaml``: what a user reads is what runs."""
    resolved = copy.deepcopy(cfg)
    resolved[ENV_CONFIGS] = {name: {split: OmegaConf.to_container(merge_env_config(cfg, name, split == "test"),
                                                                  resolve=True) for split in splits}
                             for name, splits in built_envs(cfg).items()}
    return resolved


def job_config_yaml(cfg: DictConfig) -> str:
    """The job's config as it runs, resolved (interpolations filled in, env configs merged), as YAML."""
    return OmegaConf.to_yaml(resolve_env_configs(cfg), resolve=True)
