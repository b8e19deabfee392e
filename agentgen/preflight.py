"""Checks run by launch.py before Hydra starts any job: expand the sweep, compose every job's config
and validate it, so a bad value fails fast with one paragraph and nothing is launched or submitted."""

from __future__ import annotations

from typing import Iterable

from agentgen.config import CONF_DIR, ConfigError, describe_compose_error, validate

# Hydra's own flags that take no override semantics; they pass straight through.
_FLAG_PREFIXES = ("-", "hydra/")


def split_argv(argv: Iterable[str]) -> tuple[list[str], bool, list[str]]:
    """(overrides, multirun, other flags) from the command line."""
    overrides, flags, multirun = [], [], False
    skip_next = False
    args = list(argv)
    for i, a in enumerate(args):
        if skip_next:
            skip_next = False
            continue
        if a in ("-m", "--multirun"):
            multirun = True
        elif a.startswith("-"):
            flags.append(a)
            if a in ("-cd", "--config-dir", "-cp", "--config-path", "-cn", "--config-name") and i + 1 < len(args):
                skip_next = True
        else:
            overrides.append(a)
    return overrides, multirun, flags


def expand(overrides: list[str], multirun: bool) -> list[list[str]]:
    """The override list of every job a (multi)run would launch."""
    if not multirun:
        return [overrides]
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(overrides)
    return [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def compose_job(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            return compose("config", overrides=[o for o in overrides if not o.startswith("hydra.")])
        except Exception as exc:  # noqa: BLE001 - every composition error becomes a ConfigError paragraph
            raise ConfigError(describe_compose_error(exc, overrides)) from None


def preflight(argv: list[str]) -> bool:
    """Validate every job of the command line; return False when nothing should be launched."""
    overrides, multirun, flags = split_argv(argv)
    if any(f in ("--help", "-h", "--hydra-help", "--info", "-i", "--cfg", "-c", "--shell-completion", "-sc")
           for f in flags):
        return True
    jobs = expand(overrides, multirun)
    for job in jobs:
        cfg = compose_job(job)
        try:
            validate(cfg)
        except ConfigError as err:
            raise ConfigError(f"{err} (job: {' '.join(job) or 'defaults'})") from None
    return True
