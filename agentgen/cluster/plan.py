"""Dry run of a sweep: every job it would launch, composed and validated, with the GPUs and GPU-hours it
would take. Nothing is run or submitted.

    python -m agentgen.cluster.plan -m +sweeps=gen_tax model=llama3_1_8b_instruct cluster=slurm_8gpu
    python launch.py -m +sweeps=gen_tax ... --plan        (or task=plan: the same, via launch.py)

The jobs are exactly the launcher's: the config's ``hydra.sweeper.params`` (a sweep file's grid) then the
command line, expanded by Hydra's basic sweeper, minus the combinations ``hydra.sweeper.exclude`` drops,
numbered as the sweeper numbers them. Each job is composed from ``conf/`` with Hydra's compose API, once
per distinct choice of config groups (``env=``, ``sft=``, ``+sweeps=`` ...): the jobs that share it differ
only in plain values (``seed=``, ``think=``, ``trainer.steps=``), which are applied to a copy of that config
with Hydra's own override step (``ConfigLoaderImpl._apply_overrides_to_config``, what ``compose`` runs after
merging the defaults), and the ``hydra.overrides.task`` / ``hydra.job.override_dirname`` they change are
set as Hydra sets them. Every job's config is still complete and validated on its own; the 84-job study
grid plans in a few seconds instead of 30-45 (``bench/bench_cli.py``).

GPU-hours are an estimate: per job, the GPUs it reserves (``cluster.gpus_per_node x cluster.nodes`` on
Slurm, ``model.resources.gpus`` locally) x ``trainer.steps`` x ``model.resources.seconds_per_step``
(each model preset's rough RL step time on its GPUs; ``DEFAULT_SECONDS_PER_STEP`` when unset). SFT
warm-up and evaluation time are not counted.
"""

from __future__ import annotations

import contextlib
import copy
import re
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hydra._internal.config_repository import CachingConfigRepository
from omegaconf import DictConfig, OmegaConf, open_dict

from agentgen.cluster.plugins import register
from agentgen.cluster.sweep import (
    SweepError,
    expand_grid,
    format_job,
    grid_axes,
    job_output_dir,
    parse_overrides,
    parse_rules,
    split_excluded,
    summary_status,
)
from agentgen.config import CONF_DIR, check_group_choices, describe_compose_error, env_checks_shared, validate

DEFAULT_SECONDS_PER_STEP = 60.0  # = agentgen.config.ModelResources.seconds_per_step's default
PLAN_FLAGS = ("--plan", "-m", "--multirun")


@dataclass
class JobEstimate:
    gpus: int  # GPUs the job reserves
    rl_steps: int
    seconds_per_step: float
    model: str

    @property
    def hours(self) -> float:
        return self.rl_steps * self.seconds_per_step / 3600.0

    @property
    def gpu_hours(self) -> float:
        return self.gpus * self.hours


@dataclass
class Plan:
    command: list[str]  # the overrides planned
    jobs: list[list[str]]  # override list of every job to launch, numbered by position
    # Per job, aligned with ``jobs``; None where the job's config did not compose (see ``errors``).
    configs: list[DictConfig | None]  # the composed config (without the hydra node)
    output_dirs: list[Path | None]
    states: list[str | None]  # summary.json status already in the job's output dir (None: new)
    estimates: list[JobEstimate | None]
    excluded: list[tuple[list[str], str]]  # (job, the rule that excluded it)
    swept: dict[str, list[str]]  # swept key -> values
    fixed: dict[str, str]  # fixed override key -> value
    sweep_dir: Path
    errors: list[tuple[list[str], str]] = field(default_factory=list)  # (job, one-paragraph problem)

    @property
    def total_gpu_hours(self) -> float:
        return sum(e.gpu_hours for e in self.estimates if e is not None)


def _compose_error(exc: BaseException, overrides: list[str]) -> str:
    return describe_compose_error(exc, overrides)


def estimate(cfg: DictConfig) -> JobEstimate:
    """GPUs, RL steps and step time of one job (see the module docstring)."""
    cluster = cfg.get("cluster") or {}
    if cluster.get("name", "local") == "local":
        gpus = int(OmegaConf.select(cfg, "model.resources.gpus", default=0) or 0)
    else:
        gpus = int(cluster.get("gpus_per_node") or 0) * int(cluster.get("nodes") or 1)
    steps = (
        int(OmegaConf.select(cfg, "trainer.steps", default=0) or 0)
        if cfg.get("task", "train") == "train"
        else 0
    )
    sps = OmegaConf.select(cfg, "model.resources.seconds_per_step", default=None)
    return JobEstimate(
        gpus=gpus,
        rl_steps=steps,
        seconds_per_step=float(sps or DEFAULT_SECONDS_PER_STEP),
        model=str(OmegaConf.select(cfg, "model.name", default="?")),
    )


class JobComposer:
    """Composes the jobs of one sweep: Hydra's compose once per group choice, then the plain-value overrides.

    Call inside ``initialize_config_dir``. A job's overrides split as Hydra's defaults list splits them
    (``hydra._internal.defaults_list.Overrides``): an override whose key is a config group (and whose value
    is not a dict) chooses a config; every other one is a config override applied after composition.
    The config files are read and parsed once for all composes (``_ParsedOnce``)."""

    def __init__(self, config_name: str, hydra_overrides: Sequence[str], sweep_dir: Path):
        from hydra.core.global_hydra import GlobalHydra

        self.config_name = config_name
        self.hydra_overrides = list(hydra_overrides)
        self.sweep_dir = sweep_dir
        loader = GlobalHydra.instance().config_loader()
        self.repo = loader.repository
        parsed: dict = {}

        def fresh_repo(config_name, overrides):  # ConfigLoaderImpl's own, with the shared parse cache
            from hydra.core.override_parser.overrides_parser import OverridesParser

            parsed_overrides = OverridesParser.create().parse_overrides(overrides=overrides)
            repo = _ParsedOnce(loader.repository, parsed)
            loader._process_config_searchpath(config_name, parsed_overrides, repo)
            return parsed_overrides, repo

        # this loader lives until initialize_config_dir exits: only the plan's composes see the cache
        loader._parse_overrides_and_create_caching_repo = fresh_repo
        # group choice -> (composed config with its hydra node, the same without it) or the compose error
        self.composed: dict[tuple[str, ...], tuple[DictConfig, DictConfig] | BaseException] = {}
        from hydra.core.hydra_config import HydraConfig

        self.previous_view = HydraConfig.instance().cfg
        self.viewed: DictConfig | None = None

    def _is_value_override(self, o) -> bool:
        return o.package is None and (isinstance(o.value(), dict) or not self.repo.group_exists(o.key_or_group))

    def _base(self, choice: tuple[str, ...]) -> tuple[DictConfig, DictConfig]:
        from hydra import compose

        if choice not in self.composed:
            try:
                overrides = self.hydra_overrides + list(choice)
                full = compose(self.config_name, overrides=overrides, return_hydra_config=True)
                with open_dict(full):
                    full.hydra.sweep.dir = str(self.sweep_dir)  # one resolution of ${now:...} for the whole sweep
                job_part = copy.deepcopy(full)
                with open_dict(job_part):
                    del job_part["hydra"]
                self.composed[choice] = (full, job_part)
            except Exception as exc:  # noqa: BLE001 - kept and raised again for every job with this choice
                self.composed[choice] = exc
        base = self.composed[choice]
        if isinstance(base, BaseException):
            raise base
        return base

    def _shared_output_dir(self, full: DictConfig, job: dict) -> Path:
        """``job_output_dir`` for a job that shares its group choice's hydra node: that node and Hydra's view of
        it (``HydraConfig``, which ``${hydra:...}`` reads) are set up once per choice, then updated per job."""
        from hydra.core.hydra_config import HydraConfig

        hc = HydraConfig.instance()
        if self.viewed is not full:
            hc.set_config(full)  # a copy of the hydra node, made once per group choice
            self.viewed = full
        _set_job(full, job)
        _set_job(hc.cfg, job)
        return (Path(str(full.hydra.sweep.dir)) / str(full.hydra.sweep.subdir)).absolute()

    def close(self) -> None:
        """Give Hydra back the HydraConfig it had before."""
        from hydra.core.hydra_config import HydraConfig

        HydraConfig.instance().cfg = self.previous_view

    def compose(self, job: Sequence[str], num: int) -> tuple[DictConfig, Path]:
        """(the job's config without the hydra node, its output dir): what ``compose(config, hydra overrides +
        job)`` and Hydra's sweeper give job number ``num``."""
        from hydra._internal.config_loader_impl import ConfigLoaderImpl, get_overrides_dirname
        from hydra.errors import ConfigCompositionException
        from omegaconf.errors import OmegaConfBaseException

        check_group_choices(list(job))
        parsed = parse_overrides(job)
        values = [o for o in parsed if self._is_value_override(o)]
        full, job_part = self._base(tuple(o.input_line for o in parsed if not self._is_value_override(o)))
        # the output dir needs the hydra node; copy it only if its sweep dir names read job keys
        with_hydra = _sweep_dir_reads_job_keys(full)
        cfg = copy.deepcopy(full if with_hydra else job_part)
        try:
            ConfigLoaderImpl._apply_overrides_to_config(values, cfg)
        except OmegaConfBaseException as exc:  # as Hydra's load_configuration wraps it
            raise ConfigCompositionException() from exc
        target = cfg if with_hydra else full
        dirname = target.hydra.job.config.override_dirname
        job_node = {
            "task": [o.input_line for o in parsed],
            "override_dirname": get_overrides_dirname(
                overrides=parsed, kv_sep=dirname.kv_sep, item_sep=dirname.item_sep, exclude_keys=dirname.exclude_keys
            ),
            "num": num,
        }
        out = job_output_dir(_set_job(target, job_node), num) if with_hydra else self._shared_output_dir(full, job_node)
        if with_hydra:
            with open_dict(cfg):
                del cfg["hydra"]
        return cfg, out


class _ParsedOnce(CachingConfigRepository):
    """Hydra's per-compose config cache, filled from configs read and parsed once per plan. Each compose gets
    its own deep copies: Hydra merges loaded nodes into the composed config without copying them."""

    def __init__(self, delegate, parsed: dict):
        super().__init__(delegate)
        self.parsed = parsed

    def load_config(self, config_path: str):
        key = f"config_path={config_path}"
        if key not in self.cache:
            if key not in self.parsed:
                self.parsed[key] = self.delegate.load_config(config_path=config_path)
            self.cache[key] = copy.deepcopy(self.parsed[key])
        return self.cache[key]


def _set_job(cfg: DictConfig, job: dict) -> DictConfig:
    """Set what Hydra sets per job in a hydra node: the task overrides, override_dirname and the job number."""
    from omegaconf import read_write

    with read_write(cfg.hydra), open_dict(cfg.hydra):
        cfg.hydra.overrides.task = job["task"]
        cfg.hydra.job.override_dirname = job["override_dirname"]
        cfg.hydra.job.num = job["num"]
    return cfg


def _sweep_dir_reads_job_keys(cfg: DictConfig) -> bool:
    """True if hydra.sweep.dir / subdir interpolate anything but the hydra node and ${now:}."""
    sweep = OmegaConf.to_container(cfg.hydra.sweep, resolve=False)
    refs = re.findall(r"\$\{([^}]*)\}", f"{sweep.get('dir')} {sweep.get('subdir')}")
    return any(not r.startswith(("hydra:", "hydra.", "now:")) for r in refs)


def make_plan(
    overrides: Sequence[str],
    conf_dir: str | Path | None = None,
    config_name: str = "config",
    validate: Callable[[DictConfig], None] | None = None,
) -> Plan:
    """Expand, exclude, compose (and ``validate``, which raises on a bad config) every job of a sweep.
    Composition and validation problems are collected per job in ``Plan.errors``; a malformed sweep
    (bad exclude rule, all jobs excluded) raises SweepError."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from agentgen.algos.registry import register_schemas  # torch: only when a plan is made, not on import

    if conf_dir is None:
        conf_dir = CONF_DIR
    register()
    register_schemas()  # the algorithms' typed schemas (algo/<name>_schema), as the launcher composes them
    overrides = list(overrides)
    parsed = OverridesParser.create().parse_overrides(overrides)
    hydra_ovr = [o.input_line for o in parsed if o.key_or_group.startswith(("hydra.", "hydra/"))]
    task_ovr = [o.input_line for o in parsed if not o.key_or_group.startswith(("hydra.", "hydra/"))]
    plain = [o.input_line for o in parsed if not o.is_sweep_override()]
    try:  # the sweep's values are checked job by job (JobComposer)
        check_group_choices([o for o in plain if not o.startswith(("hydra.", "hydra/"))])
    except ValueError as err:
        raise SweepError(str(err)) from None

    with initialize_config_dir(
        config_dir=str(Path(conf_dir).absolute()), job_name="launch", version_base="1.3"
    ):
        try:
            base = compose(config_name, overrides=plain, return_hydra_config=True)
        except Exception as exc:  # noqa: BLE001 - one paragraph for the user, whatever Hydra raised
            raise SweepError(_compose_error(exc, plain)) from None
        sweeper = base.hydra.sweeper
        params = OmegaConf.to_container(sweeper.params, resolve=False) if sweeper.get("params") else {}
        rules = parse_rules(sweeper.get("exclude"))
        sweep_dir = Path(str(base.hydra.sweep.dir)).absolute()

        jobs = expand_grid(params, task_ovr)
        kept, excluded = split_excluded(jobs, rules)
        if not kept:
            raise SweepError(
                f"hydra.sweeper.exclude removes all {len(jobs)} jobs of this sweep; nothing to run."
            )
        swept, fixed = grid_axes(params, task_ovr)
        composer = JobComposer(config_name, hydra_ovr, sweep_dir)
        plan = Plan(
            command=overrides,
            jobs=kept,
            configs=[],
            output_dirs=[],
            states=[],
            estimates=[],
            excluded=[(j, str(r)) for j, r in excluded],
            swept=swept,
            fixed=fixed,
            sweep_dir=sweep_dir,
        )
        with env_checks_shared(), contextlib.closing(composer):  # a grid repeats its env configs: checked once
            for num, job in enumerate(kept):
                try:
                    cfg, out = composer.compose(job, num)
                except Exception as exc:  # noqa: BLE001
                    plan.errors.append((job, _compose_error(exc, job)))
                    for column in (plan.configs, plan.output_dirs, plan.states, plan.estimates):
                        column.append(None)
                    continue
                if validate is not None:
                    try:
                        validate(cfg)
                    except ValueError as err:
                        plan.errors.append((job, str(err)))
                plan.configs.append(cfg)
                plan.output_dirs.append(out)
                plan.states.append(summary_status(out) if out.is_dir() else None)
                plan.estimates.append(estimate(cfg))
    return plan


def _hours(h: float) -> str:
    return f"{h:.1f} h" if h >= 1 else f"{h * 60:.0f} min"


def format_plan(plan: Plan) -> str:
    n = len(plan.jobs)
    grid_size = 1
    for values in plan.swept.values():
        grid_size *= len(values)
    states = Counter(s or "new" for s in plan.states)
    lines = [
        f"Plan: {n} job(s)"
        + (f" ({len(plan.excluded)} excluded)" if plan.excluded else "")
        + f", output under {plan.sweep_dir}"
    ]
    if plan.swept:
        dims = " x ".join(str(len(v)) for v in plan.swept.values())
        lines.append(f"Grid ({dims} = {grid_size}):")
        width = max(len(k) for k in plan.swept)
        lines += [f"  {k:<{width}}  {', '.join(v)}" for k, v in plan.swept.items()]
    if plan.fixed:
        lines.append("Fixed: " + " ".join(f"{k}={v}" for k, v in plan.fixed.items()))
    if plan.excluded:
        lines.append(f"Excluded by hydra.sweeper.exclude ({len(plan.excluded)}):")
        for rule, count in Counter(r for _, r in plan.excluded).items():
            lines.append(f"  {rule}: {count} job(s)")
    composed = [c for c in plan.configs if c is not None]
    estimates = [e for e in plan.estimates if e is not None]
    if composed:
        c = composed[0].get("cluster") or {}
        if c.get("name", "local") == "local":
            lines.append("Cluster: local (jobs run one after another in this process)")
        else:
            lines.append(
                f"Cluster: {c.get('name')}: {c.get('nodes', 1)} node(s) x {c.get('gpus_per_node') or 0} GPU(s), "
                f"{c.get('cpus_per_task')} CPU(s) per task, time limit {c.get('timeout_min')} min, "
                f"{c.get('max_requeues', 0)} requeue(s), at most {c.get('array_parallelism')} job(s) at once"
            )
        groups = Counter((e.gpus, e.rl_steps, e.seconds_per_step, e.model) for e in estimates)
        lines.append(
            "Estimate (trainer.steps x model.resources.seconds_per_step; SFT and evaluation not counted):"
        )
        for (gpus, steps, sps, model), count in groups.items():
            e = JobEstimate(gpus, steps, sps, model)
            lines.append(
                f"  {count} job(s) x {gpus} GPU(s) x {_hours(e.hours)} ({steps} RL steps x {sps:g} s, "
                f"model={model}) = {count * e.gpu_hours:.1f} GPU-hours"
            )
        lines.append(
            f"  total: {plan.total_gpu_hours:.1f} GPU-hours, "
            f"{sum(e.gpus for e in estimates)} GPU(s) if all jobs run at once"
        )
        limit_h = (c.get("timeout_min") or 0) / 60.0 * (1 + int(c.get("max_requeues") or 0))
        longest = max((e.hours for e in estimates), default=0.0)
        if c.get("name", "local") != "local" and limit_h and longest > limit_h:
            lines.append(
                f"  warning: the longest job needs ~{_hours(longest)}, more than the time limit x "
                f"(1 + cluster.max_requeues) = {_hours(limit_h)}: raise cluster.timeout_min or "
                f"cluster.max_requeues"
            )
    if any(plan.states):
        lines.append(
            "Already in the sweep dir: "
            + ", ".join(f"{v} {k}" for k, v in states.items())
            + " (resume=skip_completed skips the completed ones)"
        )
    lines.append("Jobs:")
    width = len(str(max(n - 1, 0)))
    for num, job in enumerate(plan.jobs):
        state = plan.states[num]
        lines.append(f"  #{num:<{width}} {format_job(job)}" + (f"   [{state}]" if state else ""))
    if plan.errors:
        lines.append(f"{len(plan.errors)} job config(s) are invalid:")
        lines += [f"  {format_job(job)}: {msg}" for job, msg in plan.errors]
    else:
        lines.append(f"All {n} job config(s) composed and validated; nothing was launched.")
    return "\n".join(lines)


def plan_overrides(argv: Sequence[str]) -> list[str]:
    """The overrides of a launch.py command line, without -m/--plan and task=plan (they mean: plan this)."""
    unknown = [a for a in argv if a.startswith("-") and a not in PLAN_FLAGS]
    if unknown:
        raise SweepError(
            f"unsupported option(s) for a plan: {' '.join(unknown)}; give overrides and optionally "
            f"{', '.join(PLAN_FLAGS)}."
        )
    return [a for a in argv if a not in PLAN_FLAGS and a != "task=plan"]


def main(argv: Sequence[str] | None = None) -> int:
    """Print the plan of a launch.py command line; exit code 2 if the sweep or any job config is invalid."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        plan = make_plan(plan_overrides(argv), validate=validate)
    except SweepError as err:
        print(f"agentgen plan: error: {err}", file=sys.stderr)
        return 2
    print(format_plan(plan))
    return 2 if plan.errors else 0


if __name__ == "__main__":
    sys.exit(main())
