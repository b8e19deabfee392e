"""Sweep grids: which jobs a sweep launches, which combinations it excludes, where each job writes.

A sweep is Hydra's basic-sweeper grid: the config's ``hydra.sweeper.params`` followed by the command
line's overrides (the command line replaces a key the params also set), expanded as a cartesian product.
Sweep files may drop combinations with ``hydra.sweeper.exclude``, a list of rules; a job is excluded when
it matches every key of one rule. A rule value may be a list, meaning "any of these"::

    hydra:
      sweeper:
        exclude:
          - {sft: none, think: false}          # never RL without warm-up *and* without thinking
          - {env: [alfworld, webshop], augment: none}

Rule keys are override keys (``env``, ``think``, ``trainer.steps``); a rule naming a key that no job
sets is an error (a typo would otherwise exclude nothing). Values are compared as Hydra parses them
(``false`` equals ``False``, ``1e-6`` equals ``0.000001``).

Why not hydra-filter-sweeper (2.1.0, evaluated for issue 16): it can express these three rules, but only
by proxy, and it would not remove what we wanted to remove. (1) Its ``FilterSweeper`` subclasses the same
private ``hydra._internal...BasicSweeper`` that ``AgentgenSweeper`` does. (2) Its filters see each job's
composed, resolved config with the ``hydra`` node deleted, so the group choices the rules name are gone:
``{start: v1, env: sciworld}`` has to become the Python expression ``start_name == 'v1' and 'sciworld' in
env``, ``augment: v2`` becomes ``augment.name == 'v2'`` (evalidate strings instead of data). (3) It decides
by composing every grid cell in the sweeper, whereas ``--plan`` and preflight (``agentgen.cluster.plan``)
must list the kept jobs themselves without running the sweeper: they would have to replay the library's
private filter loop (``FilterSweeper._filter_override``). Here a rule is matched on the override strings,
before any composition, in the sweeper and the plan alike, and a rule naming a key no job sets is an
error listing the keys that are set.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from agentgen import summary
from agentgen.config import REPO_ROOT, SWEEP_GROUP, SWEEPS_DIR  # noqa: F401  (the sweep files' home, re-exported)


class SweepError(ValueError):
    """A user error in a sweep definition: printed as one paragraph."""


# --------------------------------------------------------------------------- grid
def sweep_arguments(params: Mapping[str, Any] | None, arguments: Sequence[str]) -> list[str]:
    """The override strings Hydra's basic sweeper expands: the config's params first, then the command line."""
    return [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)


def expand_grid(
    params: Mapping[str, Any] | None, arguments: Sequence[str], config_loader: Any = None
) -> list[list[str]]:
    """Every job's override list, in the order (and so with the numbers) Hydra's sweeper gives them."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create(config_loader=config_loader)
    parsed = parser.parse_overrides(sweep_arguments(params, arguments))
    return [list(job) for job in BasicSweeper.split_arguments(parsed, None)[0]]


def grid_axes(
    params: Mapping[str, Any] | None, arguments: Sequence[str]
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(swept key -> its values, fixed key -> its value), keys in grid order."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    swept: dict[str, list[str]] = {}
    fixed: dict[str, str] = {}
    for o in OverridesParser.create().parse_overrides(sweep_arguments(params, arguments)):
        key = o.get_key_element()
        swept.pop(key, None)
        fixed.pop(key, None)
        if o.is_sweep_override():
            swept[key] = list(o.sweep_string_iterator())
        else:
            fixed[key] = o.get_value_element_as_str()
    return swept, fixed


# --------------------------------------------------------------------------- exclusions
def _canonical(value: Any) -> str:
    """One spelling per value, so YAML's ``false`` and the override ``think=false`` compare equal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_canonical(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_canonical(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else repr(value)
    return str(value)


@lru_cache(maxsize=4096)
def _parse_override(line: str):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    return OverridesParser.create().parse_override(line)


def parse_overrides(job: Sequence[str]) -> list:
    """Hydra's parse of one job's overrides; each distinct string is parsed once (a grid repeats them: the
    parser costs milliseconds per string). Treat the returned Override objects as read-only."""
    return [_parse_override(line) for line in job]


def job_values(job: Sequence[str]) -> dict[str, str]:
    """Override key -> canonical value of one job (``+``/``~`` prefixes dropped)."""
    values = {}
    for o in parse_overrides(job):
        values[o.key_or_group] = _canonical(o.value())
    return values


@dataclass(frozen=True)
class ExcludeRule:
    """Excludes the jobs whose value of every key is one of the rule's values for that key."""

    accepted: tuple[tuple[str, frozenset[str]], ...]  # (key, canonical values), in the rule's order

    def matches(self, values: Mapping[str, str]) -> bool:
        return all(key in values and values[key] in allowed for key, allowed in self.accepted)

    def __str__(self) -> str:
        parts = []
        for key, allowed in self.accepted:
            vals = sorted(allowed)
            parts.append(f"{key}={vals[0]}" if len(vals) == 1 else f"{key} in ({', '.join(vals)})")
        return " and ".join(parts)


def parse_rules(raw: Any) -> list[ExcludeRule]:
    """``hydra.sweeper.exclude`` (a list of {key: value or [values]}) as rules; SweepError if malformed."""
    if raw is None:
        return []
    if OmegaConf.is_config(raw):
        raw = OmegaConf.to_container(raw, resolve=True)
    if not isinstance(raw, list):
        raise SweepError(
            f"hydra.sweeper.exclude must be a list of rules like {{sft: none, think: false}}; got {raw!r}."
        )
    rules = []
    for i, rule in enumerate(raw):
        if not isinstance(rule, Mapping) or not rule:
            raise SweepError(
                f"hydra.sweeper.exclude[{i}] = {rule!r} is not a rule: write a mapping of override keys "
                f"to a value or a list of values, e.g. {{env: [alfworld, webshop], think: false}}."
            )
        accepted = []
        for key, val in rule.items():
            vals = val if isinstance(val, list) else [val]
            accepted.append((str(key).lstrip("+~"), frozenset(_canonical(v) for v in vals)))
        rules.append(ExcludeRule(tuple(accepted)))
    return rules


def split_excluded(
    jobs: Sequence[Sequence[str]], rules: Sequence[ExcludeRule]
) -> tuple[list[list[str]], list[tuple[list[str], ExcludeRule]]]:
    """(jobs to launch, [(excluded job, the first rule it matched)]). SweepError if a rule names a key
    that no job sets, listing the keys that are set."""
    if not rules:
        return [list(j) for j in jobs], []
    values = [job_values(j) for j in jobs]
    known = set().union(*values) if values else set()
    for rule in rules:
        missing = [k for k, _ in rule.accepted if k not in known]
        if missing:
            raise SweepError(
                f"hydra.sweeper.exclude rule '{rule}' names {', '.join(repr(m) for m in missing)}, "
                f"which no job of this sweep sets; keys set: {', '.join(sorted(known)) or 'none'}."
            )
    kept, excluded = [], []
    for job, vals in zip(jobs, values):
        hit = next((r for r in rules if r.matches(vals)), None)
        if hit is None:
            kept.append(list(job))
        else:
            excluded.append((list(job), hit))
    return kept, excluded


# --------------------------------------------------------------------------- output dirs
def job_output_dir(job_cfg: DictConfig, num: int) -> Path:
    """Where Hydra will run job number ``num``: ``hydra.sweep.dir / hydra.sweep.subdir`` resolved as
    ``hydra.core.utils.run_job`` resolves them (``${hydra:...}`` reads the job's own Hydra config).
    A subdir that uses ``hydra.job.id`` (the Slurm id, unknown before submission) cannot be predicted."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import read_write

    hc = HydraConfig.instance()
    previous = hc.cfg
    with read_write(job_cfg.hydra), open_dict(job_cfg):
        job_cfg.hydra.job.num = num
    try:
        hc.set_config(job_cfg)
        path = Path(str(job_cfg.hydra.sweep.dir)) / str(job_cfg.hydra.sweep.subdir)
    finally:
        hc.cfg = previous
    return path.absolute()


def summary_status(out_dir: str | Path) -> str | None:
    """The ``status`` of a job's summary.json ("completed", "failed", "running"), or None if it has none;
    "interrupted" for a job that stopped after its checkpoint on Slurm's time-limit / preemption signal
    (``agentgen.cluster.preemption.JobInterrupted``): it resumes when requeued or when the sweep is re-run."""

    try:
        data = summary.read(out_dir)
    except (OSError, ValueError):
        return "unreadable"
    if data is None:
        return None
    status = str(data.get("status", "unknown"))
    if status == "failed" and str(data.get("error") or "").startswith("JobInterrupted"):
        return "interrupted"
    return status


def checkpoint_step(out_dir: str | Path) -> int | None:
    """The RL step of the job's latest checkpoint (``checkpoints/latest`` -> ``<tag>/state.json``), if any."""
    import json

    root = Path(out_dir) / "checkpoints"
    try:
        tag = (root / "latest").read_text().strip()
        return int(json.loads((root / tag / "state.json").read_text()).get("step", 0))
    except (OSError, ValueError, TypeError):
        return None


def format_job(job: Iterable[str]) -> str:
    return " ".join(job) or "(defaults)"
