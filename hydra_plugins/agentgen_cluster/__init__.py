"""Hydra loads sweepers and launchers only from the hydra_plugins namespace: agentgen's live in
agentgen.cluster.plugins (and agentgen.cluster.launcher); these subclasses only give them a name here."""

from agentgen.cluster.plugins import AgentgenSlurmLauncher as _AgentgenSlurmLauncher
from agentgen.cluster.plugins import AgentgenSweeper as _AgentgenSweeper

# found by type: the agentgen-sweeps:// config source and the search path that puts sweeps/ on it
from agentgen.cluster.plugins import SweepsConfigSource, SweepsSearchPath  # noqa: F401


class AgentgenSweeper(_AgentgenSweeper):
    """hydra/sweeper=agentgen: the basic sweeper plus hydra.sweeper.exclude."""


class AgentgenSlurmLauncher(_AgentgenSlurmLauncher):
    """hydra/launcher=agentgen_slurm: submitit's Slurm launcher plus skip/no-wait/manifest."""
