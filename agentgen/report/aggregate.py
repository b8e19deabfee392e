"""From job summaries to the study's tables: success matrices per modeling choice, Delta-OOD against
baseline rows, the OOD ranking score, forgetting / transfer of sequential runs and the environment
profile. The arithmetic itself lives in ``metrics``; this module only decides what to compare.

Protocol (the study's): a job's figure on an env is the mean of its evaluations at the last ``K``
checkpoints (default 4); a cell is the mean over seeds, shown with the sample standard deviation.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from agentgen.report.metrics import (
    OodRanking,
    Stat,
    delta_ood,
    delta_ood_relative_sum,
    last_k_mean,
    mean_std,
    ood_envs_for,
    ood_ranking,
    sequential_metrics,
)
from agentgen.report.schema import (
    Choice,
    ProfileEntry,
    RunSummary,
    env_sort_key,
    norm_value,
    profile_entries,
    train_kind,
)

# Factors whose variants are compared with a baseline row, and the baseline value of each.
DEFAULT_BASELINES = {"augment": "none", "think": "true", "sft": "none"}
# Ranks of different starting checkpoints are summed, like Table 1's "V1+V2" column.
DEFAULT_COMBINE_OVER = "start"
PERCENT_METRICS = ("success_rate", "valid_action_ratio")
KIND_ORDER = {"single": 0, "mixture": 1, "sequential": 2}


@dataclass(frozen=True)
class Settings:
    last_k: int = 4
    metric: str = "success_rate"
    tie_points: float = 0.5
    baselines: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_BASELINES))
    combine_over: str = DEFAULT_COMBINE_OVER

    def __post_init__(self) -> None:
        if self.last_k < 1:
            raise ValueError(f"last_k must be a positive number of checkpoints, got {self.last_k}")
        if self.tie_points < 0:
            raise ValueError(f"tie_points must be >= 0 (points of success), got {self.tie_points}")

    @property
    def scale(self) -> float:
        """Rates (0..1) are shown in percent like the paper; other metrics as they are."""
        m = self.metric
        return 100.0 if m in PERCENT_METRICS or m.startswith("pass@") else 1.0

    @property
    def unit(self) -> str:
        return "%" if self.scale == 100.0 else ""


@dataclass
class CellResult:
    """All seeds of one (modeling choice, training env) pair."""

    choice: Choice
    train_label: str
    train_envs: list[str]
    runs: list[RunSummary]
    final: dict[str, Stat]  # eval env -> last-K mean over seeds
    per_seed: dict[str, dict[str, float]]  # eval env -> seed -> last-K mean
    start: dict[str, Stat]  # eval env -> step-0 evaluation over seeds
    start_per_seed: dict[str, dict[str, float]]
    curves: dict[str, list[tuple[int, Stat]]]  # eval env -> (step, success over seeds)
    short_runs: list[str]  # sources with fewer than K checkpoints

    @property
    def kind(self) -> str:
        return train_kind(self.train_label)

    @property
    def seeds(self) -> list[str]:
        return sorted({r.seed for r in self.runs}, key=_natural)

    def is_id(self, env: str) -> bool:
        return env in self.train_envs


@dataclass
class DeltaRow:
    choice: Choice
    baseline: Choice
    factor: str
    train_label: str
    ood_envs: list[str]
    base_sum: float
    variant_sum: float
    delta: float | None  # the study's formula, percent
    delta_relative_sum: float | None  # sum of per-env relative changes, percent
    delta_per_seed: Stat | None  # the formula per matched seed
    id_change: float | None  # points, mean over ID envs


@dataclass
class SequentialRow:
    choice: Choice
    sequence: str
    stage: int
    env: str
    start: Stat | None
    before: Stat | None
    after_own: Stat | None
    final: Stat | None
    forgetting: Stat | None
    transfer: Stat | None
    joint_final: Stat | None  # the same envs trained jointly (a+b run), if the sweep has one


def _natural(text: str) -> tuple:
    return (0, int(text), "") if text.lstrip("-").isdigit() else (1, 0, text)


class SweepAggregate:
    """The aggregated sweep: cells per (modeling choice, training env); the ``*_table`` methods, the plots
    and the report read from it."""

    def __init__(self, runs: Sequence[RunSummary], settings: Settings | None = None,
                 profiles: Sequence[ProfileEntry] = ()) -> None:
        self.settings = settings or Settings()
        self.warnings: list[str] = []
        self.failed = [r for r in runs if not r.completed]
        self.completed = self._dedupe([r for r in runs if r.completed])
        self._check_metric()
        self.profiles = list(profiles) + [
            entry for r in self.completed if r.profile for entry in _profile_of(r)
        ]
        by_cell: dict[tuple[Choice, str], list[RunSummary]] = defaultdict(list)
        for run in self.completed:
            by_cell[(run.choice, run.train_env)].append(run)
        self.cells = {key: self._cell(key, rs) for key, rs in by_cell.items()}
        self.variant_keys = sorted({k for r in self.completed for k in r.variant if k != "seed"})
        self.varying_keys = [
            k for k in self.variant_keys if len({dict(c).get(k, "-") for c, _ in self.cells}) > 1
        ]
        self.choices = sorted({c for c, _ in self.cells}, key=self._choice_sort_key)
        self.eval_envs = sorted({e for cell in self.cells.values() for e in cell.final}, key=env_sort_key)
        self.rankings = {c: r for c in self.choices if (r := self._ranking(c)) is not None}
        short = [src for cell in self.cells.values() for src in cell.short_runs]
        if short:
            self.warnings.append(
                f"{len(short)} run(s) have fewer than {self.settings.last_k} checkpoint evaluations after step 0, so "
                f"their figure averages the checkpoints there are (first: {short[0]})")

    # ---------------------------------------------------------------- building
    def _check_metric(self) -> None:
        metric = self.settings.metric
        present = {k for r in self.completed for ev in [r.eval, *(e for _, e in r.eval_history)]
                   for m in ev.values() for k in m}
        if self.completed and metric not in present:
            raise ValueError(
                f"metric {metric!r} is in no evaluation of the {len(self.completed)} completed runs; "
                f"metrics they report: {', '.join(sorted(present)) or 'none'}")

    def _dedupe(self, runs: list[RunSummary]) -> list[RunSummary]:
        """One summary per (choice, training env, seed): a requeued or copied job must not count twice."""
        seen: dict[tuple, RunSummary] = {}
        ignored: list[str] = []
        for run in runs:
            key = (run.choice, run.train_env, run.seed)
            if key in seen:
                keep = max(seen[key], run, key=lambda r: (len(r.eval_history), r.source))
                drop = run if keep is seen[key] else seen[key]
                ignored.append(f"{drop.source} (kept {keep.source})")
                seen[key] = keep
            else:
                seen[key] = run
        if ignored:
            more = f" and {len(ignored) - 3} more" if len(ignored) > 3 else ""
            self.warnings.append(
                f"{len(ignored)} duplicate summaries (same variant, training env and seed) ignored: "
                f"{'; '.join(ignored[:3])}{more}")
        return list(seen.values())

    def _cell(self, key: tuple[Choice, str], runs: list[RunSummary]) -> CellResult:
        scale, metric, k = self.settings.scale, self.settings.metric, self.settings.last_k
        per_seed: dict[str, dict[str, float]] = defaultdict(dict)
        start_per_seed: dict[str, dict[str, float]] = defaultdict(dict)
        by_step: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        short = []
        for run in runs:
            checkpoints = run.checkpoints()
            if len(checkpoints) < k:
                short.append(run.source)
            envs = {e for _, ev in checkpoints for e in ev}
            for env in envs:
                pts = [(s, ev[env][metric] * scale) for s, ev in checkpoints
                       if env in ev and metric in ev[env]]
                value = last_k_mean(pts, k)
                if value is not None:
                    per_seed[env][run.seed] = value
            start = run.start_eval() or {}
            for env, m in start.items():
                if metric in m:
                    start_per_seed[env][run.seed] = m[metric] * scale
            for step, ev in run.eval_history:
                for env, m in ev.items():
                    if metric in m:
                        by_step[env][step].append(m[metric] * scale)
        return CellResult(
            choice=key[0],
            train_label=key[1],
            train_envs=list(runs[0].train_envs),
            runs=sorted(runs, key=lambda r: _natural(r.seed)),
            final={e: mean_std(v.values()) for e, v in per_seed.items() if v},
            per_seed=dict(per_seed),
            start={e: mean_std(v.values()) for e, v in start_per_seed.items() if v},
            start_per_seed=dict(start_per_seed),
            curves={e: [(s, mean_std(v)) for s, v in sorted(steps.items())] for e, steps in by_step.items()},
            short_runs=short,
        )

    def _choice_sort_key(self, choice: Choice) -> tuple:
        d = dict(choice)
        base = self.settings.baselines
        return tuple(
            (0 if d.get(k) == norm_value(base[k]) else 1, _natural(d.get(k, "-"))) if k in base
            else (0, _natural(d.get(k, "-")))
            for k in self.varying_keys
        )

    # ---------------------------------------------------------------- lookups
    def choice_label(self, choice: Choice) -> str:
        d = dict(choice)
        parts = [f"{k}={d.get(k, '-')}" for k in self.varying_keys]
        return ", ".join(parts) if parts else "all runs"

    def constant_settings(self) -> dict[str, str]:
        if not self.choices:
            return {}
        d = dict(self.choices[0])
        return {k: d.get(k, "-") for k in self.variant_keys if k not in self.varying_keys}

    def cells_of(self, choice: Choice) -> list[CellResult]:
        cells = [c for (ch, _), c in self.cells.items() if ch == choice]
        return sorted(cells, key=lambda c: (KIND_ORDER[c.kind], [env_sort_key(e) for e in c.train_envs]))

    def cell(self, choice: Choice, train_label: str) -> CellResult | None:
        return self.cells.get((choice, train_label))

    def _ranking(self, choice: Choice) -> OodRanking | None:
        singles = {c.train_label: {e: s.mean for e, s in c.final.items()}
                   for c in self.cells_of(choice) if c.kind == "single"}
        if len(singles) < 2:
            return None
        ranking = ood_ranking(singles, self.settings.tie_points)
        return ranking if ranking.scores else None

    # ---------------------------------------------------------------- comparisons
    def delta_rows(self) -> list[DeltaRow]:
        """Each variant row against its baseline row: same training env, every other choice equal."""
        rows = []
        index = {c: dict(c) for c in self.choices}
        for choice in self.choices:
            d = index[choice]
            for factor, base_value in self.settings.baselines.items():
                base_value = norm_value(base_value)
                if factor not in d or d[factor] == base_value:
                    continue
                target = {**d, factor: base_value}
                baseline = next((c for c, cd in index.items() if cd == target), None)
                if baseline is None:
                    continue
                for cell in self.cells_of(choice):
                    base_cell = self.cell(baseline, cell.train_label)
                    if base_cell is not None:
                        rows.append(self._delta(cell, base_cell, factor))
        return rows

    def _delta(self, cell: CellResult, base: CellResult, factor: str) -> DeltaRow:
        var = {e: s.mean for e, s in cell.final.items()}
        ref = {e: s.mean for e, s in base.final.items()}
        envs = sorted(ood_envs_for(cell.train_envs, var, ref), key=env_sort_key)
        per_seed = []
        for seed in set(cell.seeds) & set(base.seeds):
            v = {e: cell.per_seed[e].get(seed) for e in envs}
            b = {e: base.per_seed[e].get(seed) for e in envs}
            if all(x is not None for x in (*v.values(), *b.values())):
                per_seed.append(delta_ood(v, b, envs))
        id_envs = [e for e in cell.train_envs if e in var and e in ref]
        return DeltaRow(
            choice=cell.choice,
            baseline=base.choice,
            factor=factor,
            train_label=cell.train_label,
            ood_envs=envs,
            base_sum=sum(ref[e] for e in envs),
            variant_sum=sum(var[e] for e in envs),
            delta=delta_ood(var, ref, envs),
            delta_relative_sum=delta_ood_relative_sum(var, ref, envs),
            delta_per_seed=mean_std(x for x in per_seed if x is not None),
            id_change=(sum(var[e] - ref[e] for e in id_envs) / len(id_envs)) if id_envs else None,
        )

    def combined_rankings(self) -> list[tuple[str, dict[str, int | None]]]:
        """Scores summed over choices that differ only in ``combine_over`` (e.g. start v1 + v2). An env
        missing from any of them gets None, like SciWorld's "-" in Table 1."""
        key = self.settings.combine_over
        groups: dict[tuple, list[Choice]] = defaultdict(list)
        for choice in self.rankings:
            d = dict(choice)
            if key in d:
                groups[tuple(sorted((k, v) for k, v in d.items() if k != key))].append(choice)
        out = []
        for rest, members in groups.items():
            if len(members) < 2:
                continue
            envs = {t for c in members for t in self.rankings[c].scores}
            scores = {
                t: (sum(self.rankings[c].scores[t] for c in members)
                    if all(t in self.rankings[c].scores for c in members) else None)
                for t in envs
            }
            values = "+".join(dict(c)[key] for c in members)
            others = [f"{k}={v}" for k, v in rest if k in self.varying_keys]
            out.append((f"{key}={values}" + (f" ({', '.join(others)})" if others else ""), scores))
        return out

    def sequential_rows(self) -> list[SequentialRow]:
        rows = []
        metric, scale = self.settings.metric, self.settings.scale
        order = sorted(self.cells.items(), key=lambda kv: (self.choices.index(kv[0][0]), kv[0][1]))
        for (choice, label), cell in order:
            if cell.kind != "sequential":
                continue
            per_run = []
            for run in cell.runs:
                if not run.stages:
                    self.warnings.append(f"{run.source}: sequential run without 'stages'; "
                                         "skipped in forgetting/transfer")
                    continue
                evals = [{e: m[metric] * scale for e, m in st["eval"].items() if metric in m} for st in run.stages]
                start = run.start_eval()
                start_vals = {e: m[metric] * scale for e, m in start.items() if metric in m} if start else None
                per_run.append(sequential_metrics([st["env"] for st in run.stages], evals, start_vals))
            if not per_run:
                continue
            stage_envs = [st["env"] for st in cell.runs[0].stages]
            mixture = next((c for c in self.cells_of(choice)
                            if c.kind == "mixture" and set(c.train_envs) == set(stage_envs)), None)
            for i, env in enumerate(stage_envs):
                rows.append(SequentialRow(
                    choice=choice, sequence=label, stage=i + 1, env=env,
                    start=mean_std(m.start[env] for m in per_run if m.start and env in m.start),
                    before=mean_std(m.after_stage[i - 1].get(env) for m in per_run) if i > 0 else None,
                    after_own=mean_std(m.after_stage[i].get(env) for m in per_run),
                    final=mean_std(m.after_stage[-1].get(env) for m in per_run),
                    forgetting=mean_std(m.forgetting[env] for m in per_run if env in m.forgetting),
                    transfer=mean_std(m.transfer[env] for m in per_run if env in m.transfer),
                    joint_final=mixture.final.get(env) if mixture else None,
                ))
        return rows

    def pooled_start(self, cells: Iterable[CellResult]) -> dict[str, Stat]:
        pooled: dict[str, list[float]] = defaultdict(list)
        for cell in cells:
            for env, by_seed in cell.start_per_seed.items():
                pooled[env] += by_seed.values()
        return {e: mean_std(v) for e, v in pooled.items()}

    def ood_mean(self, cell: CellResult) -> Stat | None:
        envs = [e for e in self.eval_envs if not cell.is_id(e) and e in cell.per_seed]
        if not envs:
            return None
        vals = []
        for seed in cell.seeds:
            xs = [cell.per_seed[e].get(seed) for e in envs]
            if all(x is not None for x in xs):
                vals.append(sum(xs) / len(xs))
        return mean_std(vals)












def _profile_of(run: RunSummary) -> list[ProfileEntry]:
    return profile_entries(run.profile or {}, run.source, augment=run.variant.get("augment"))
