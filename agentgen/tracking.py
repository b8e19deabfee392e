"""Experiment tracking with wandb: offline files unless the user configured an API key or WANDB_MODE,
one run per job whose id is kept in the output dir (so a requeued job continues the same run), and
every metric plotted against ``trainer/global_step`` (a resumed offline run restarts wandb's own step).
Namespaces: ``sft/``, ``train/``, ``rollout/``, ``time/``, ``eval/<env>/``, ``final/`` (run summary).

So a sweep can be reviewed in the dashboard, every job of a multirun (local or Slurm) logs into one
group named after the sweep dir (``sweep_group``; ``multirun/<name>`` for ``+sweeps=<name>``), its run
is named by the overrides that vary across the sweep (``env=sokoban,think=false,seed=1``), and the
modeling choices are top-level config keys and tags (``dashboard_config``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentgen.cluster.sweep import grid_axes
from agentgen.secrets import masked_argv, redact
from agentgen.summary import FACTORS

log = logging.getLogger(__name__)
STEP_METRIC = "trainer/global_step"
# The modeling choices that sit at the top of a run's config, so the runs table can group and filter by
# them: what the report compares (its variant keys) plus the train env(s), difficulty and stages.
CHOICE_KEYS = (*FACTORS, "difficulty", "stages")
# Overrides that say where or how a job runs, never what it computes: left out of run names.
NOT_A_CHOICE = ("hydra", "cluster", "logger", "resume", "debug", "starts_dir", "model.path", "rollout.num_workers")


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def resolve_mode(configured: str | None) -> str:
    if configured:
        return configured
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if _has_api_key() else "offline"


def run_id(out_dir: Path) -> str:
    """The job's wandb id, created once and kept in the output dir (ids may not contain :;,#?/')."""
    path = out_dir / "wandb_run_id.txt"
    if path.exists():
        return path.read_text().strip()
    rid = re.sub(r"[^A-Za-z0-9_-]", "-", f"{out_dir.name[-40:]}-{uuid.uuid4().hex[:8]}").strip("-")
    path.write_text(rid)
    return rid


# --------------------------------------------------------------------------- sweeps as wandb groups
_TIME_NAME = re.compile(r"[0-9][0-9-_.:]*")


def sweep_group(sweep_dir: str | Path) -> str:
    """The wandb group of a sweep: its dir's name (``multirun/gen_tax`` -> ``gen_tax``); Hydra's default
    time-named dirs (``multirun/2026-01-05/12-00-00``) get their date too (``2026-01-05_12-00-00``)."""
    path = Path(sweep_dir)
    name = path.name
    if _TIME_NAME.fullmatch(name) and path.parent.name:
        name = f"{path.parent.name}_{name}"
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", name)[:128] or "sweep"


def swept_keys(sweep_dir: str | Path) -> list[str]:
    """The override keys that take several values in the sweep, from the ``multirun.yaml`` Hydra writes
    into the sweep dir (the sweep file's ``hydra.sweeper.params`` and the command line's overrides)."""
    from omegaconf import OmegaConf


    path = Path(sweep_dir) / "multirun.yaml"
    if not path.is_file():
        return []
    saved = OmegaConf.load(path)
    params = OmegaConf.select(saved, "hydra.sweeper.params", default=None)
    params = OmegaConf.to_container(params, resolve=False) if params is not None else {}
    arguments = list(OmegaConf.select(saved, "hydra.overrides.task", default=None) or [])
    swept, _ = grid_axes(params, arguments)
    return list(swept)


def short_run_name(job_overrides: Sequence[str], swept: Sequence[str]) -> str | None:
    """The overrides of one job that vary across its sweep, ``env=sokoban,think=false,seed=1``; when none
    do (a sweep of one value), its overrides less those that only say where or how it runs."""
    def key(item: str) -> str:
        return item.split("=", 1)[0].lstrip("+~")

    varying = {k.lstrip("+~") for k in swept}
    chosen = [o for o in job_overrides if key(o) in varying]
    if not chosen:
        chosen = [o for o in job_overrides if not any(key(o) == n or key(o).startswith(n + ".") for n in NOT_A_CHOICE)]
    return ",".join(re.sub(r"=(True|False)$", lambda m: "=" + m.group(1).lower(), o) for o in chosen) or None


@dataclass
class RunIdentity:
    """Where a job's run sits in wandb: its group (None for a single run) and its display name."""

    group: str | None
    name: str | None


def run_identity() -> RunIdentity:
    """The job's group and name from Hydra's runtime config: set in the job process for local multiruns
    and, by hydra-submitit-launcher, on the Slurm node too (also after a requeue)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
    except (ImportError, ValueError):  # not under Hydra (tests that call run() directly)
        return RunIdentity(None, None)
    if hc.mode != RunMode.MULTIRUN:
        return RunIdentity(None, None)
    sweep_dir = Path(str(hc.sweep.dir))
    try:
        swept = swept_keys(sweep_dir)
    except Exception as err:  # noqa: BLE001 - a run name is no reason to fail a job
        log.warning("could not read the sweep's varying keys from %s/multirun.yaml (%s); the run is named "
                    "by all its overrides", sweep_dir, err)
        swept = []
    return RunIdentity(sweep_group(sweep_dir), short_run_name(list(hc.overrides.task), swept))


# --------------------------------------------------------------------------- choices at the top
def job_choices(config: Mapping[str, Any]) -> dict[str, Any]:
    """The job's modeling choices as flat values: ``env`` (the train-env label: ``a``, ``a+b``, ``a>b``),
    the report's variant keys, and ``difficulty`` / ``stages`` when the job uses them."""
    out: dict[str, Any] = {}
    if config.get("train_env"):
        out["env"] = config["train_env"]
    out.update(dict(config.get("variant") or {}))
    envs = config.get("env") if isinstance(config.get("env"), Mapping) else {}
    levels = {name: node.get("difficulty") for name, node in envs.items()
              if isinstance(node, Mapping) and node.get("difficulty") not in (None, "all")}
    if levels:
        out["difficulty"] = next(iter(levels.values())) if len(levels) == 1 else \
            ",".join(f"{k}:{v}" for k, v in levels.items())
    stages = config.get("stages")
    if stages:
        out["stages"] = ">".join(f"{s.get('env')}:{s.get('steps')}" if isinstance(s, Mapping) else str(s)
                                 for s in stages)
    return {k: out[k] for k in CHOICE_KEYS if k in out}


def dashboard_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The run's wandb config: the choices at the top level (``env``, ``think``, ... as plain values); the
    config nodes they replace there are kept as ``<key>_config`` (``env_config``, ``stages_config``, ...)."""
    choices = job_choices(config)
    out = {k: v for k, v in config.items() if k not in choices}
    for k in choices:
        if isinstance(config.get(k), (Mapping, list)):  # a group's node, or the list of stages
            out[f"{k}_config"] = config[k]
    out.update(choices)
    return out


def choice_tags(choices: Mapping[str, Any]) -> list[str]:
    """``env:sokoban``, ``think:false``, ... (wandb tags are at most 64 characters)."""
    def text(v: Any) -> str:
        return ("true" if v else "false") if isinstance(v, bool) else str(v)

    return [f"{k}:{text(v)}"[:64] for k, v in choices.items()]


class Tracker:
    """A thin wandb wrapper; ``logger=none`` gives a tracker that records nothing."""

    def __init__(self, logger_cfg, out_dir: Path, config: dict[str, Any], name: str, tags: list[str]):
        self.enabled = logger_cfg.name == "wandb"
        self.run = None
        self.cfg = logger_cfg
        if not self.enabled:
            return
        import wandb

        mode = resolve_mode(logger_cfg.get("mode"))
        identity = run_identity()
        choices = job_choices(config)
        tags = list(dict.fromkeys([*(logger_cfg.get("tags") or []), *tags, *choice_tags(choices)]))
        # every string wandb stores is masked: a config may interpolate a credential, the command line
        # (in wandb's run metadata) may carry one (agentgen.secrets)
        with masked_argv():
            self.run = wandb.init(
                project=redact(logger_cfg.project), entity=redact(logger_cfg.get("entity")),
                group=redact(logger_cfg.get("group") or identity.group), job_type=redact(logger_cfg.get("job_type")),
                tags=redact(tags), name=redact(identity.name or name), config=redact(dashboard_config(config)),
                dir=str(out_dir), id=run_id(out_dir), resume="allow", mode=mode,
                settings=wandb.Settings(silent=True, console="off", x_disable_stats=True),
            )
        self.run.define_metric(STEP_METRIC)
        self.run.define_metric("*", step_metric=STEP_METRIC)
        self._tables: dict[str, Any] = {}

    @property
    def run_dir(self) -> str | None:
        return self.run.dir.rsplit("/files", 1)[0] if self.run else None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        if self.run:
            self.run.log({**metrics, STEP_METRIC: step})

    def log_samples(self, key: str, rows: list[dict[str, Any]], step: int) -> None:
        """Trajectory samples as an incremental table (rows appended across evaluations)."""
        if not self.run or not rows:
            return
        if key not in self._tables:
            self._tables[key] = TrajectorySampleTable(self.run, key=key)
        self._tables[key].log(step, rows)

    def summary(self, values: dict[str, Any]) -> None:
        if self.run:
            for k, v in values.items():
                self.run.summary[k] = v

    def finish(self, failed: bool = False) -> None:
        if self.run:
            self.run.finish(exit_code=1 if failed else 0)
            self.run = None


TRAJECTORY_COLUMNS = ("step", "env", "split", "seed", "success", "return", "turns", "trajectory")


class TrajectorySampleTable:
    """Trajectory samples of a run as one incremental wandb table: ``log(step, samples)`` appends the
    samples of that evaluation (dicts keyed by ``columns``; missing keys are left empty)."""

    def __init__(self, run: Any = None, key: str = "samples/trajectories",
                 columns: Sequence[str] = TRAJECTORY_COLUMNS, step_key: str = STEP_METRIC) -> None:
        import wandb

        self.run = run or wandb.run
        if self.run is None:
            raise RuntimeError("TrajectorySampleTable needs a wandb run: call wandb.init(...) first or pass run=")
        self.key, self.columns, self.step_key = key, list(columns), step_key
        self.table = wandb.Table(columns=self.columns, log_mode="INCREMENTAL", allow_mixed_types=True)
        self.rows_logged = 0

    def log(self, step: int, samples: Sequence[Mapping[str, Any]]) -> None:
        unknown = sorted({k for s in samples for k in s} - set(self.columns))
        if unknown:
            raise ValueError(f"trajectory sample keys {unknown} are not columns of {self.key!r}; "
                             f"valid columns: {', '.join(self.columns)}")
        for sample in samples:
            row = {**sample, "step": sample.get("step", step)} if "step" in self.columns else sample
            self.table.add_data(*[_cell(row.get(c)) for c in self.columns])
        self.run.log({self.key: self.table, self.step_key: step})
        self.rows_logged += len(samples)


def _cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return value
