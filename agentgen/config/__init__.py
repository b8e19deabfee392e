"""agentgen's config, by job: ``schema`` (the typed Hydra schema), ``groups`` (conf/, sweeps/ and their
options), ``envs`` (the env-config step whose result a job reads, prints with ``--cfg job`` and stores),
``messages`` (Hydra's errors as one paragraph) and ``validate`` (the checks before any work). Each
component's own options are in agentgen/options. The names below stay importable from ``agentgen.config``."""

from agentgen.config.envs import (
    ENV_CONFIGS,
    built_env_config,
    env_config,
    instance_subset,
    job_config_yaml,
    merge_env_config,
    resolve_env_configs,
)
from agentgen.config.groups import (
    CONF_DIR,
    REPO_ROOT,
    SWEEP_GROUP,
    SWEEPS_DIR,
    group_options,
    load_algo_file,
)
from agentgen.config.messages import check_group_choices, describe_compose_error
from agentgen.config.schema import (
    PROFILE_POLICIES,
    TASKS,
    AgentConfig,
    AgentgenConfig,
    EnvConfig,
    EvalConfig,
    HealthConfig,
    LoggerConfig,
    ModelConfig,
    ModelLR,
    ModelResources,
    ProfileConfig,
    RewardConfig,
    RolloutConfig,
    SFTConfig,
    SplitConfig,
    TrainerConfig,
    profile_config,
)
from agentgen.config.validate import env_checks_shared, validate
from agentgen.errors import ConfigError

__all__ = ["CONF_DIR", "ENV_CONFIGS", "PROFILE_POLICIES", "REPO_ROOT", "SWEEPS_DIR", "SWEEP_GROUP", "TASKS",
           "AgentConfig", "AgentgenConfig", "ConfigError", "EnvConfig", "EvalConfig", "HealthConfig", "LoggerConfig",
           "ModelConfig", "ModelLR", "ModelResources", "ProfileConfig", "RewardConfig", "RolloutConfig", "SFTConfig",
           "SplitConfig", "TrainerConfig", "built_env_config", "check_group_choices", "describe_compose_error",
           "env_checks_shared", "env_config", "group_options", "instance_subset", "job_config_yaml",
           "load_algo_file", "merge_env_config", "profile_config", "resolve_env_configs", "validate"]
