"""The one list of environments: agentgen's own (every ``agentgen/envs/<env>/plugin.py`` with a ``PLUGIN``)
and third-party ones, declared by their packages in the entry point group ``agentgen.envs``
(``toy = toyenv:PLUGIN`` in the distribution's entry_points.txt), the way pytest and gymnasium find plugins.

Everything that needs the env names, titles, classes, augmenters, yaml files or parameter checks asks here.
Plugins are read once per process (``reload()`` reads them again, e.g. after sys.path changed)."""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import pkgutil
from pathlib import Path

from agentgen.envs.plugin import EnvPlugin
from agentgen.errors import ConfigError

ENTRY_POINT_GROUP = "agentgen.envs"
ENVS_DIR = Path(__file__).resolve().parent
CONF_DIR = ENVS_DIR.parent.parent / "conf"  # agentgen's own conf/ (env/<name>.yaml for in-tree envs)


class UnknownEnvError(ConfigError, KeyError):
    """A name no plugin declares (a KeyError for dict-like callers, a ConfigError for the launcher)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _check(plugin: object, where: str) -> EnvPlugin:
    if not isinstance(plugin, EnvPlugin):
        raise ConfigError(f"{where} is {type(plugin).__name__}, not an agentgen.envs.plugin.EnvPlugin.")
    return plugin


@functools.lru_cache(maxsize=None)
def _in_tree() -> list[tuple[EnvPlugin, str]]:
    found = []
    for info in pkgutil.iter_modules([str(ENVS_DIR)]):
        module = f"{__package__}.{info.name}"
        if info.ispkg and (ENVS_DIR / info.name / "plugin.py").is_file():
            found.append((_check(importlib.import_module(f"{module}.plugin").PLUGIN, f"{module}.plugin:PLUGIN"),
                          f"{module}.plugin (in-tree)"))
    return found


def _third_party() -> list[tuple[EnvPlugin, str]]:
    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = f" (distribution {ep.dist.name} {ep.dist.version})" if ep.dist else ""
        where = f"entry point {ep.name} = {ep.value}{dist}"
        try:
            plugin = _check(ep.load(), where)
        except ConfigError:
            raise
        except Exception as err:  # noqa: BLE001 - any import error of a plugin becomes one paragraph
            raise ConfigError(f"environment plugin {where} failed to load: {type(err).__name__}: {err}") from err
        if plugin.name != ep.name:
            raise ConfigError(f"{where} declares environment {plugin.name!r}; the entry point's name must be the "
                              f"env's name ({plugin.name} = {ep.value}).")
        if plugin.conf is not None:
            conf = Path(plugin.conf)
            if conf.name != f"{plugin.name}.yaml" or conf.parent.name != "env" or not conf.is_file():
                raise ConfigError(f"{where}: conf={conf} must be an existing file <dir>/env/{plugin.name}.yaml "
                                  f"(Hydra finds it on the search path <dir> as env={plugin.name}).")
        found.append((plugin, where))
    return found


def _table(found: list[tuple[EnvPlugin, str]]) -> dict[str, EnvPlugin]:
    table: dict[str, EnvPlugin] = {}
    source: dict[str, str] = {}
    for plugin, where in found:
        if plugin.name in table:
            raise ConfigError(f"environment {plugin.name!r} is declared twice: by {source[plugin.name]} and by "
                              f"{where}; uninstall one of them or rename its env.")
        table[plugin.name], source[plugin.name] = plugin, where
    return dict(sorted(table.items(), key=lambda kv: (kv[1].order, kv[0])))


@functools.lru_cache(maxsize=None)
def in_tree_plugins() -> dict[str, EnvPlugin]:
    """agentgen's own envs only (no entry points read): name -> plugin, in listing order."""
    return _table(_in_tree())


@functools.lru_cache(maxsize=None)
def plugins() -> dict[str, EnvPlugin]:
    """Every env, in-tree and third-party: name -> plugin, in listing order."""
    return _table(_in_tree() + _third_party())


def reload() -> None:
    """Forget the plugins read so far (the next call reads the modules and entry points again)."""
    _in_tree.cache_clear()
    in_tree_plugins.cache_clear()
    plugins.cache_clear()
    importlib.invalidate_caches()


def names() -> tuple[str, ...]:
    return tuple(plugins())


def get(name: str) -> EnvPlugin:
    table = plugins()
    if name not in table:
        raise UnknownEnvError(f"unknown environment {name!r}; valid environments: {', '.join(table)}")
    return table[name]


def env_class(name: str) -> type:
    return get(name).env_class()


def title(name: str) -> str:
    """The report title of ``name`` (the name itself for an env no plugin here declares)."""
    plugin = plugins().get(name)
    return plugin.title if plugin else name


def with_augmenter() -> tuple[str, ...]:
    """The envs that define state augmentation (distractors)."""
    return tuple(n for n, p in plugins().items() if p.augmenter)


def augmenter_class(name: str) -> type:
    plugin = plugins().get(name)
    if plugin is None or plugin.augmenter is None:
        raise ValueError(f"no state augmentation is defined for environment {name!r}; defined for: "
                         f"{', '.join(with_augmenter())}")
    return plugin.augmenter_class()


def default_eval_envs() -> list[str]:
    """eval.envs by default: agentgen's envs that declare ``eval_by_default`` (the study's four)."""
    return [n for n, p in in_tree_plugins().items() if p.eval_by_default]


def env_conf_file(name: str) -> Path:
    """The yaml of env ``name``: agentgen's conf/env/<name>.yaml, or the plugin's own ``conf``."""
    plugin = get(name)
    return Path(plugin.conf) if plugin.conf is not None else CONF_DIR / "env" / f"{name}.yaml"


def conf_search_dirs() -> list[Path]:
    """The folders Hydra must search for third-party envs' yaml (each holds env/<name>.yaml)."""
    dirs = [Path(p.conf).resolve().parent.parent for p in plugins().values() if p.conf is not None]
    return list(dict.fromkeys(dirs))


__all__ = [
    "ENTRY_POINT_GROUP",
    "UnknownEnvError",
    "augmenter_class",
    "conf_search_dirs",
    "default_eval_envs",
    "env_class",
    "env_conf_file",
    "get",
    "in_tree_plugins",
    "names",
    "plugins",
    "reload",
    "title",
    "with_augmenter",
]
