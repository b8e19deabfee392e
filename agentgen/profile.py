"""The profile's command line: ``python -m agentgen.profile --env all --augment none,medium,high``.

A thin wrapper: it composes the same config a ``python launch.py task=profile`` job gets, once per augment
level, runs the profile phase (``agentgen.phases.profile_phase``) on it and prints Table 1's rows."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.errors import HydraException

from agentgen.config import CONF_DIR, describe_compose_error, group_options
from agentgen.errors import ConfigError
from agentgen.phases.profile_phase import PROFILE_FILE, format_table, run_profile

__all__ = ["compose_config", "format_table", "main", "run_profile"]


def compose_config(envs: list[str], augment: str, overrides: list[str]):
    """The job config a ``task=profile`` launch would get, via Hydra's compose API."""
    env_override = f"env={envs[0]}" if len(envs) == 1 else f"env=[{','.join(envs)}]"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=["task=profile", env_override, f"augment={augment}", *overrides])


def main(argv: list[str] | None = None) -> int:
    envs_available = group_options("env")
    parser = argparse.ArgumentParser(
        prog="python -m agentgen.profile",
        description="Profile environments (papers.md A section 5): state richness, planning complexity, goal "
        "reachability, optimal length; writes profile.json per augment level.",
    )
    parser.add_argument("--env", default="sokoban", help=f"comma list of {', '.join(envs_available)}, or all")
    parser.add_argument(
        "--policy", default="expert", help="expert | random | model | <model dir or job output dir>"
    )
    parser.add_argument("--episodes", type=int, default=128)
    parser.add_argument("--tmax", type=int, default=50)
    parser.add_argument(
        "--augment",
        default="none",
        help=f"comma list of augment settings ({', '.join(group_options('augment'))}); one profile.json each",
    )
    parser.add_argument("--eps", type=float, default=None, help="explicit eps for every env (augment.eps=)")
    parser.add_argument("--split", default="train", choices=("train", "test"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=0, help="env worker processes (0: in-process)")
    parser.add_argument("--model", default=None, help="model preset for --policy model/<path> (conf/model)")
    parser.add_argument("--logger", default="none", choices=("none", "wandb"))
    parser.add_argument("--out", default=None, help="output dir (default outputs/profile/<time>)")
    parser.add_argument("overrides", nargs="*", help="extra Hydra overrides, e.g. env.sokoban.params.dim=8")
    args = parser.parse_args(argv)

    envs = envs_available if args.env == "all" else [e.strip() for e in args.env.split(",") if e.strip()]
    bad = [e for e in envs if e not in envs_available]
    levels = [a.strip() for a in args.augment.split(",") if a.strip()]
    bad_aug = [a for a in levels if a not in group_options("augment")]
    if bad or bad_aug or not envs or not levels:
        parser.error(
            f"unknown env(s) {bad} (valid: {', '.join(envs_available)}, all) or augment setting(s) {bad_aug} "
            f"(valid: {', '.join(group_options('augment'))})"
        )
    root = Path(args.out or Path("outputs") / "profile" / time.strftime("%Y-%m-%d_%H-%M-%S"))
    extra = [
        f"++profile.policy={args.policy}",
        f"++profile.episodes={args.episodes}",
        f"++profile.tmax={args.tmax}",
        f"++profile.split={args.split}",
        f"seed={args.seed}",
        f"rollout.num_workers={args.workers}",
        f"logger={args.logger}",
    ]
    if args.model:
        extra.append(f"model={args.model}")
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] %(message)s")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        for level in levels:
            ov = extra + ([f"augment.eps={args.eps:g}"] if args.eps is not None and level != "none" else [])
            ov += list(args.overrides)
            try:
                cfg = compose_config(envs, level, ov)
            except HydraException as exc:
                raise ConfigError(describe_compose_error(exc, ov)) from exc
            out = root / level if len(levels) > 1 else root
            results[level] = run_profile(cfg, out)
            print(f"wrote {out / PROFILE_FILE}", file=sys.stderr)
    except ConfigError as err:
        print(f"agentgen: error: {err}", file=sys.stderr)
        return 2
    print(format_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
