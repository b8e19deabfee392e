"""Hydra finds third-party envs' yaml: ``EnvConfSearchPath`` appends, for every entry-point env whose plugin
ships a ``conf`` file (<dir>/env/<name>.yaml), ``file://<dir>`` to the config search path, so
``python launch.py env=<name>`` composes it as agentgen's own ``conf/env/*.yaml``. Appended, so agentgen's
own groups win on a name clash.

Hydra loads search-path plugins only from the ``hydra_plugins`` namespace: the shim
``hydra_plugins/agentgen_envs/__init__.py`` imports this class there; ``register()`` does it in-process
(compose API: preflight, sweep plans, tests)."""

from __future__ import annotations

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

from agentgen.envs import registry

PROVIDER = "agentgen-envs"


class EnvConfSearchPath(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        present = {entry.path for entry in search_path.get_path()}
        for folder in registry.conf_search_dirs():
            path = f"file://{folder}"
            if path not in present:
                search_path.append(provider=PROVIDER, path=path)


def register() -> None:
    """Make the search path known to Hydra in this process (the shim does it when Hydra scans its plugins)."""
    from hydra.core.plugins import Plugins

    Plugins.instance().register(EnvConfSearchPath)


__all__ = ["EnvConfSearchPath", "register"]
