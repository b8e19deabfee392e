"""Where the config lives and what its groups offer: conf/ and sweeps/, each group's options (the yaml files,
and third-party envs' own), and the algorithms' stand-in schemas for a composition that has not imported them."""

from __future__ import annotations

from pathlib import Path

from hydra.core.config_store import ConfigStore
from omegaconf import DictConfig, OmegaConf

from agentgen.envs import registry

REPO_ROOT = Path(__file__).resolve().parents[2]

CONF_DIR = REPO_ROOT / "conf"

SWEEPS_DIR = REPO_ROOT / "sweeps"

SWEEP_GROUP = SWEEPS_DIR.name  # `+sweeps=<file>` selects sweeps/<file>.yaml


def group_options(group: str) -> list[str]:
    """Option names of a config group (the yaml files in conf/<group>/; for env, also third-party envs' own)."""
    names = {p.stem for p in (CONF_DIR / group).glob("*.yaml")}
    if group == "env":
        names |= {n for n in registry.names() if registry.env_conf_file(n).is_file()}
    return sorted(names)


def _group_dir(group: str) -> tuple[Path, str]:
    """(folder, how to name it) of a config group: conf/<group>/, or sweeps/ for +sweeps=."""
    if group == SWEEP_GROUP:
        return SWEEPS_DIR, "sweeps/"
    return CONF_DIR / group, f"conf/{group}/"


def _choices(group: str) -> list[str]:
    folder, _ = _group_dir(group)
    names = {p.stem for p in folder.glob("*.yaml") if not p.stem.startswith("_")}
    return sorted(names | set(group_options("env")) if group == "env" else names)


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
