"""The typed schema of agentgen's Hydra config, registered in Hydra's ConfigStore as ``agentgen_schema`` and first in
``conf/config.yaml``'s defaults, so a wrongly typed override (``think=maybe``) fails at compose time. The
components' own ``params`` blocks are typed by agentgen/options; ``profile_config`` reads task=profile's keys."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Dict, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from agentgen.envs.registry import default_eval_envs
from agentgen.errors import ConfigError
from agentgen.options import RolloutOptions

TASKS = ("train", "eval", "profile", "split", "plan")


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
    warmup_steps: int = 0  # RL's learning rate rises linearly over its first N optimiser updates (each RL step
    # makes ceil(turns / mini_batch_states) x ppo_epochs of them), then stays at lr; 0: constant from the start
    save_every: int = 15  # checkpoint interval in RL steps (papers.md A)
    keep_checkpoints: int = 2  # complete checkpoints kept (a corrupt newest one falls back to the one before)
    max_turns_schedule: Optional[Dict[str, Any]] = None  # ScalingInter-RL: {rounds: [..], phase: N}
    time_budget_s: Optional[float] = None  # stop RL after the step that brings its wall time past this (then
    # checkpoint and evaluate as at the last step); None = run all `steps`
    strategy: str = "single"  # single | deepspeed
    behaviour_logprobs: str = "auto"  # auto: the sampler's own when they are exact (rollout=hf, fp32, no top-p/k
    # truncation), saving a scoring pass | score: always a scoring pass before the update
    check_sampler_every: int = 10  # with the sampler's log-probs reused: every N steps score a few samples with the
    # trainer anyway and log the true gap (rollout/sampler_check_gap_*); 0: never
    check_sampler_samples: int = 8  # samples scored by that check
    max_staleness: int = 0  # 0: synchronous | N >= 1: rollouts of steps k+1..k+N run while step k updates, no batch
    # trains on turns of weights more than N updates old (agentgen/rollout/ahead.py)
    partial_rollouts: bool = False  # with max_staleness >= 1: an episode spanning a weight push continues on the new
    # weights (each turn tagged with its version)
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
    paired: bool = True  # each episode's draws seeded by (seed, episode): repeatable, checkpoints on the same draws
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
    # written by the env-config step (agentgen.config.envs.resolve_env_configs), not by hand: every env the job
    # builds, by env and split (train | test), as built
    env_configs: Dict[str, Any] = field(default_factory=dict)

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
