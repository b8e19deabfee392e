"""agentgen's Hydra plugins: the sweep-file sweeper, the Slurm launcher and the ``sweeps/`` search path.

- ``hydra/sweeper=agentgen`` (``AgentgenSweeper``): Hydra's basic sweeper plus ``exclude`` rules
  (``agentgen.cluster.sweep``), so a sweep file declares the combinations it must not run. Every
  sweep file selects it; excluded jobs are dropped before numbering, under any launcher.
- ``hydra/launcher=agentgen_slurm`` (``agentgen.cluster.launcher.AgentgenSlurmLauncher``).
- ``SweepsSearchPath`` adds ``sweeps/`` to Hydra's config search path as the group ``sweeps`` (through
  ``SweepsConfigSource``, which shows Hydra the repository root with nothing in it but ``sweeps/``), so
  ``+sweeps=<name>`` selects ``sweeps/<name>.yaml`` from any working directory while help, tab completion
  and "valid choices" listings never walk the rest of the checkout (``.venv/``, ``outputs/``, ``multirun/``).

Hydra instantiates sweepers and launchers only from modules under ``hydra_plugins.``; the shim
``hydra_plugins/agentgen_cluster/__init__.py`` (text in ``SHIM_SOURCE``) subclasses these there.
``register()`` makes the search path and the sweeper config available in-process without the shim
(compose API: ``agentgen.cluster.plan``, tests).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra._internal.core_plugins.file_config_source import FileConfigSource
from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.config_store import ConfigStore
from hydra.core.object_type import ObjectType
from hydra.errors import HydraException
from hydra.plugins.search_path_plugin import SearchPathPlugin
from omegaconf import OmegaConf

from agentgen.cluster.launcher import AgentgenSlurmLauncher
from agentgen.cluster.sweep import (
    REPO_ROOT,
    SWEEP_GROUP,
    SWEEPS_DIR,
    expand_grid,
    format_job,
    parse_rules,
    split_excluded,
)
from agentgen.envs import search_path

log = logging.getLogger(__name__)

SHIM_MODULE = "hydra_plugins.agentgen_cluster"
SHIM_SOURCE = '''"""Hydra loads sweepers and launchers only from the hydra_plugins namespace: agentgen's live in
agentgen.cluster.plugins (and agentgen.cluster.launcher); these subclasses only give them a name here."""

from agentgen.cluster.plugins import AgentgenSlurmLauncher as _AgentgenSlurmLauncher
from agentgen.cluster.plugins import AgentgenSweeper as _AgentgenSweeper
# found by type: the agentgen-sweeps:// config source and the search path that puts sweeps/ on it
from agentgen.cluster.plugins import SweepsConfigSource, SweepsSearchPath  # noqa: F401


class AgentgenSweeper(_AgentgenSweeper):
    """hydra/sweeper=agentgen: the basic sweeper plus hydra.sweeper.exclude."""


class AgentgenSlurmLauncher(_AgentgenSlurmLauncher):
    """hydra/launcher=agentgen_slurm: submitit's Slurm launcher plus skip/no-wait/manifest."""
'''


@dataclass
class AgentgenSweeperConf:
    _target_: str = f"{SHIM_MODULE}.AgentgenSweeper"
    max_batch_size: int | None = None
    params: dict[str, str] | None = None
    exclude: list[dict[str, Any]] | None = None  # rules; see agentgen.cluster.sweep


ConfigStore.instance().store(
    group="hydra/sweeper", name="agentgen", node=AgentgenSweeperConf, provider="agentgen"
)


class AgentgenSweeper(BasicSweeper):
    def __init__(
        self,
        max_batch_size: int | None = None,
        params: dict[str, str] | None = None,
        exclude: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.rules = parse_rules(exclude)

    def sweep(self, arguments: list[str]) -> Any:
        """BasicSweeper.sweep with the excluded combinations removed before jobs are numbered."""
        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        jobs = expand_grid(self.params, arguments, self.hydra_context.config_loader)
        kept, excluded = split_excluded(jobs, self.rules)
        for job, rule in excluded:
            log.info("excluded by hydra.sweeper.exclude (%s): %s", rule, format_job(job))
        if not kept:
            raise HydraException(
                f"hydra.sweeper.exclude removes all {len(jobs)} jobs of this sweep; nothing to run."
            )
        log.info("Sweep: %d job(s), %d excluded", len(kept), len(excluded))
        self.overrides = list(self.split_overrides_to_chunks(kept, self.max_batch_size))

        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns = []
        initial_job_idx = 0
        while not self.is_done():
            batch = self.get_job_batch()
            tic = time.perf_counter()
            self.validate_batch_is_legal(batch)
            log.debug("Validated configs of %d jobs in %.2f s", len(batch), time.perf_counter() - tic)
            results = self.launcher.launch(batch, initial_job_idx=initial_job_idx)
            for r in results:
                _ = r.return_value  # raises if the job failed, as in BasicSweeper
            initial_job_idx += len(batch)
            returns.append(results)
        return returns


class SweepsConfigSource(FileConfigSource):
    """The repository root as Hydra sees it through ``agentgen-sweeps://``: only the ``sweeps`` group.

    A plain ``file://`` source on the root would make every folder of the checkout a config group, and
    Hydra's help and completion list groups recursively (a venv has thousands of folders)."""

    @staticmethod
    def scheme() -> str:
        return "agentgen-sweeps"

    @staticmethod
    def _visible(config_path: str) -> bool:
        top = config_path.strip("/").split("/", 1)[0]
        return top == SWEEP_GROUP

    def is_group(self, config_path: str) -> bool:
        return (config_path.strip("/") == "" and super().is_group("")) or (
            self._visible(config_path) and super().is_group(config_path)
        )

    def is_config(self, config_path: str) -> bool:
        return self._visible(config_path) and super().is_config(config_path)

    def load_config(self, config_path: str):
        if not self._visible(config_path):
            from hydra.plugins.config_source import ConfigLoadError

            raise ConfigLoadError(f"Config not found: {config_path} (agentgen-sweeps shows only {SWEEP_GROUP}/)")
        return super().load_config(config_path)

    def list(self, config_path: str, results_filter: ObjectType | None) -> list[str]:
        if config_path.strip("/") == "":
            wanted = results_filter in (None, ObjectType.GROUP)
            return [SWEEP_GROUP] if wanted and super().is_group(SWEEP_GROUP) else []
        return super().list(config_path, results_filter) if self._visible(config_path) else []


class SweepsSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        if SWEEPS_DIR.is_dir():
            search_path.append(provider="agentgen-sweeps", path=f"{SweepsConfigSource.scheme()}://{REPO_ROOT}")


def register() -> None:
    """Make the sweeps/ search path (and third-party envs' conf, ``agentgen.envs.search_path``) known to Hydra
    in this process (the shims do it when installed)."""
    from hydra.core.plugins import Plugins

    Plugins.instance().register(SweepsConfigSource)
    Plugins.instance().register(SweepsSearchPath)
    search_path.register()


def write_shim(root: str | Path) -> Path:
    """Write ``hydra_plugins/agentgen_cluster/__init__.py`` under ``root`` (a directory on sys.path)."""
    path = Path(root) / "hydra_plugins" / "agentgen_cluster" / "__init__.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(SHIM_SOURCE)
    return path


__all__ = [
    "SHIM_SOURCE",
    "AgentgenSlurmLauncher",
    "AgentgenSweeper",
    "SweepsConfigSource",
    "SweepsSearchPath",
    "register",
    "write_shim",
]
