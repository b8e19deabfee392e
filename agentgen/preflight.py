"""Checks run by launch.py before Hydra starts any job: expand the sweep (command line and sweep
file, minus excluded combinations), compose every job's config and validate it, so a bad value fails
fast with one paragraph and nothing is launched or submitted."""

from __future__ import annotations

from typing import Iterable

from omegaconf import DictConfig

from agentgen.cluster.plan import SweepError, make_plan
from agentgen.cluster.plugins import register
from agentgen.cluster.sweep import format_job
from agentgen.config import CONF_DIR, ConfigError, check_group_choices, describe_compose_error, validate
from agentgen.lock import check

INFO_FLAGS = ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc",
              "--resolve", "-p", "--package")


def split_argv(argv: Iterable[str]) -> tuple[list[str], bool, list[str]]:
    """(overrides, multirun, other flags) from the command line."""
    overrides, flags, multirun = [], [], False
    args = list(argv)
    skip_next = False
    for i, a in enumerate(args):
        if skip_next:
            skip_next = False
            continue
        if a in ("-m", "--multirun"):
            multirun = True
        elif a.startswith("-"):
            flags.append(a)
            if a in ("-cd", "--config-dir", "-cp", "--config-path", "-cn", "--config-name", "-p", "--package",
                     "-c", "--cfg", "-i", "--info") and i + 1 < len(args) and "=" not in args[i + 1]:
                skip_next = True
        else:
            overrides.append(a)
    return overrides, multirun, flags


def submits_to_slurm(checked: bool | DictConfig) -> str | None:
    """The cluster preset that makes a single run a Slurm job (None: it runs in this process).

    Hydra's launcher applies to multiruns only, so launch.py runs such a job as a one-job sweep. Inside a
    Slurm allocation (``$SLURM_JOB_ID``: an sbatch script or srun of the user's own) the job runs where it is."""
    import os

    if not isinstance(checked, DictConfig) or os.environ.get("SLURM_JOB_ID"):
        return None
    name = str((checked.get("cluster") or {}).get("name") or "local")
    return None if name == "local" else name


def check_output_dir(argv: list[str], checked: bool | DictConfig) -> None:
    """A single run into a named dir (``hydra.run.dir=`` or ``output_dir=``) where a live job holds the lock
    is refused here, before Hydra writes anything into it (``agentgen.lock``). Sweeps and timestamped dirs
    are checked by each job itself when it starts."""
    from pathlib import Path


    if not isinstance(checked, DictConfig):
        return
    overrides, _, _ = split_argv(argv)
    named = {o.split("=", 1)[0].lstrip("+"): o.split("=", 1)[1] for o in overrides if "=" in o}
    out = checked.get("output_dir") or named.get("hydra.run.dir")
    if out:
        check(Path(str(out)))


def typed_algos() -> None:
    """Put the algorithms' typed schemas (algo/<name>_schema) in Hydra's ConfigStore. Imported here, not at the
    top: tab completion runs this module and must answer without torch, which the algorithms import."""
    from agentgen.algos.registry import register_schemas

    register_schemas()


def compose_job(overrides: list[str]):
    """The composed config of one job (without the hydra node)."""
    from hydra import compose, initialize_config_dir

    register()
    typed_algos()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            return compose("config", overrides=[o for o in overrides if not o.startswith(("hydra.", "hydra/"))])
        except Exception as exc:  # noqa: BLE001 - every composition error becomes a ConfigError paragraph
            raise ConfigError(describe_compose_error(exc, overrides)) from None


def job_config_request(argv: list[str]) -> list[str] | None:
    """The overrides of ``launch.py ... --cfg job`` (or ``-c job``) for one job, else None: agentgen answers it
    itself, with the config as the job will run it (``agentgen.config.job_config_yaml``: interpolations filled
    in, env configs merged), which the job also stores as <output dir>/config.yaml. ``--cfg all|hydra`` and
    ``--package`` stay Hydra's."""
    overrides, multirun, flags = split_argv(argv)
    args = list(argv)
    asked = any(a in ("--cfg", "-c") and i + 1 < len(args) and args[i + 1] == "job" for i, a in enumerate(args))
    if not asked or multirun or any(f in ("--package", "-p") for f in flags):
        return None
    return [o for o in overrides if o != "job"]


def print_job_config(overrides: list[str]) -> None:
    """Compose and validate the job, then print its config as it will run (raises ConfigError when invalid)."""
    from agentgen.config import job_config_yaml

    check_group_choices(overrides)
    cfg = compose_job(overrides)
    validate(cfg)
    print(job_config_yaml(cfg), end="")


def preflight(argv: list[str]) -> bool | DictConfig:
    """Validate every job of the command line; raise ConfigError on the first bad one. A single run returns
    its composed config (launch.py reads where it runs), a sweep or an information flag True."""
    overrides, multirun, flags = split_argv(argv)
    if not any(f in ("--shell-completion", "-sc") for f in flags):
        typed_algos()  # for Hydra's own composition after this (the run, --cfg), too
    if any(f in INFO_FLAGS for f in flags):
        return True
    check_group_choices(overrides)
    if not multirun:
        sweep = next((o for o in overrides if o.split("=", 1)[0].lstrip("+") == "sweeps"), None)
        if sweep:
            raise ConfigError(f"{sweep} is a whole sweep (a grid of jobs): add -m to run its jobs (python launch.py "
                              f"-m {sweep} ...), or -m ... --plan to list them first; without -m one job with the "
                              "default values would run.")
        cfg = compose_job(overrides)
        validate(cfg)
        return cfg

    try:
        plan = make_plan(overrides, validate=validate)
    except SweepError as err:
        raise ConfigError(str(err)) from None
    if plan.errors:
        job, msg = plan.errors[0]
        more = f" ({len(plan.errors) - 1} more job(s) are invalid too)" if len(plan.errors) > 1 else ""
        raise ConfigError(f"{msg} (job: {format_job(job)}){more}; nothing was launched.")
    return True
