"""Hydra loads sweepers and launchers only from the hydra_plugins namespace: agentgen's live in
agentgen.cluster.plugins (and agentgen.cluster.launcher); these subclasses only give them a name here."""

from agentgen.cluster.plugins import AgentgenSlurmLauncher as _AgentgenSlurmLauncher
from agentgen.cluster.plugins import AgentgenSweeper as _AgentgenSweeper
from agentgen.cluster.plugins import SweepsSearchPath  # noqa: F401  (found by type: puts sweeps/ on the search path)


class AgentgenSweeper(_AgentgenSweeper):
    """hydra/sweeper=agentgen: the basic sweeper plus hydra.sweeper.exclude."""


class AgentgenSlurmLauncher(_AgentgenSlurmLauncher):
    """hydra/launcher=agentgen_slurm: submitit's Slurm launcher plus skip/no-wait/manifest."""
