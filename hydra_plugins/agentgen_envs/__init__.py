"""Hydra loads search-path plugins only from the hydra_plugins namespace: agentgen's env search path (third-party
envs' conf/env/<name>.yaml) lives in agentgen.envs.search_path; found here by type."""

from agentgen.envs.search_path import EnvConfSearchPath  # noqa: F401
