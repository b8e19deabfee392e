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
    env_title,
    norm_value,
    profile_entries,
    train_kind,
    train_label_title,
)
from agentgen.report.tables import Cell, Table, slug

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

    # ---------------------------------------------------------------- tables
    def matrix_table(self, choice: Choice) -> Table:
        unit = self.settings.unit
        cols = ["training env"] + [env_title(e) for e in self.eval_envs] + [f"OOD mean{unit and ' ' + unit}", "seeds"]
        rows = []
        cells = self.cells_of(choice)
        start = self._pooled_start(cells)
        if start:
            rows.append(["start checkpoint (step 0)"] + [start.get(e) for e in self.eval_envs] + [None, ""])
        for cell in cells:
            row = [train_label_title(cell.train_label)]
            for env in self.eval_envs:
                stat = cell.final.get(env)
                row.append(Cell(stat, tag="ID" if cell.is_id(env) else None, css=None if cell.is_id(env) else "ood"))
            row.append(self._ood_mean(cell))
            row.append(", ".join(cell.seeds))
            rows.append(row)
        return Table(
            key=slug("success_" + self.choice_label(choice)),
            title=f"{self._metric_title()} ({self.choice_label(choice)})",
            columns=cols, rows=rows,
            note=(f"Mean over the last {self.settings.last_k} checkpoints, then over seeds (± sample std). "
                  "ID = the training env(s); other cells are out-of-domain."),
            meta={"choice": choice},
        )

    def _pooled_start(self, cells: Iterable[CellResult]) -> dict[str, Stat]:
        pooled: dict[str, list[float]] = defaultdict(list)
        for cell in cells:
            for env, by_seed in cell.start_per_seed.items():
                pooled[env] += by_seed.values()
        return {e: mean_std(v) for e, v in pooled.items()}

    def _ood_mean(self, cell: CellResult) -> Stat | None:
        envs = [e for e in self.eval_envs if not cell.is_id(e) and e in cell.per_seed]
        if not envs:
            return None
        vals = []
        for seed in cell.seeds:
            xs = [cell.per_seed[e].get(seed) for e in envs]
            if all(x is not None for x in xs):
                vals.append(sum(xs) / len(xs))
        return mean_std(vals)

    def change_table(self, choice: Choice) -> Table | None:
        """Final minus step-0 evaluation, per seed: what training on one env cost or gave the others."""
        rows = []
        for cell in self.cells_of(choice):
            row = [train_label_title(cell.train_label)]
            any_value = False
            for env in self.eval_envs:
                diffs = [cell.per_seed[env][s] - cell.start_per_seed[env][s]
                         for s in cell.seeds
                         if s in cell.per_seed.get(env, {}) and s in cell.start_per_seed.get(env, {})]
                stat = mean_std(diffs)
                any_value |= stat is not None
                row.append(Cell(stat, tag="ID" if cell.is_id(env) else None, fmt="{:+.1f}"))
            if any_value:
                rows.append(row)
        if not rows:
            return None
        return Table(
            key=slug("change_from_start_" + self.choice_label(choice)),
            title=f"Change from the start checkpoint, points ({self.choice_label(choice)})",
            columns=["training env"] + [env_title(e) for e in self.eval_envs], rows=rows,
            note="Last-K mean minus the step-0 evaluation of the same run, then mean ± std over seeds. "
                 "Negative OOD cells are the generalization tax.",
        )

    def delta_table(self) -> Table | None:
        rows = self.delta_rows()
        if not rows:
            return None
        out = []
        for r in rows:
            out.append([
                train_label_title(r.train_label),
                r.factor,
                self.choice_label(r.choice),
                self.choice_label(r.baseline),
                ", ".join(env_title(e) for e in r.ood_envs),
                r.base_sum, r.variant_sum,
                Cell(r.delta, fmt="{:+.1f}%", css=_sign_css(r.delta)),
                Cell(r.delta_per_seed, fmt="{:+.1f}%"),
                Cell(r.delta_relative_sum, fmt="{:+.1f}%"),
                Cell(r.id_change, fmt="{:+.1f}"),
            ])
        return Table(
            key="delta_ood",
            title="Delta-OOD of each variant against its baseline row",
            columns=["training env", "factor", "variant", "baseline", "OOD envs", "baseline OOD sum",
                     "variant OOD sum", "ΔOOD", "ΔOOD per seed", "Σ per-env relative Δ", "ΔID (points)"],
            rows=out,
            note=("ΔOOD = Σ_e [succ(variant, e) − succ(baseline, e)] / Σ_e succ(baseline, e) × 100 over the OOD "
                  "envs both rows were evaluated on (the study's formula, on the seed means). 'ΔOOD per seed' applies "
                  "it to each seed both rows share. 'Σ per-env relative Δ' sums (v−b)/b per env: not the stated "
                  "formula, but the reading the study's Table 7 figures below −100% imply."),
        )

    def ranking_summary_table(self) -> Table | None:
        if not self.rankings:
            return None
        combined = self.combined_rankings()
        envs = sorted({t for r in self.rankings.values() for t in r.scores}, key=env_sort_key)
        cols = ["training env"] + [self.choice_label(c) for c in self.rankings] + [label for label, _ in combined]
        rows = []
        for env in envs:
            row = [env_title(env)] + [r.scores.get(env) for r in self.rankings.values()]
            row += [scores.get(env) for _, scores in combined]
            rows.append(row)
        return Table(
            key="ood_rank_score",
            title="OOD ranking score (lower is better)",
            columns=cols, rows=rows, digits=0,
            note=(f"For each OOD eval env, the single-env training runs are ranked by success there (dense ranks; "
                  f"gaps under {self.settings.tie_points:g} points tie); a training env's score sums its ranks. "
                  f"Combined columns add the scores of choices differing only in '{self.settings.combine_over}', "
                  "and are '-' for an env missing from any of them (as in the study's Table 1)."),
        )

    def ranking_detail_table(self, choice: Choice) -> Table | None:
        ranking = self.rankings.get(choice)
        if ranking is None:
            return None
        envs = sorted(ranking.ranks, key=env_sort_key)
        rows = []
        for t in sorted(ranking.scores, key=env_sort_key):
            rows.append([env_title(t)] + [ranking.ranks[e].get(t) for e in envs] + [ranking.scores[t]])
        return Table(
            key=slug("ood_ranks_" + self.choice_label(choice)),
            title=f"OOD ranks per eval env ({self.choice_label(choice)})",
            columns=["training env"] + [f"rank on {env_title(e)}" for e in envs] + ["score"],
            rows=rows, digits=0,
        )

    def sequential_table(self) -> Table | None:
        rows = self.sequential_rows()
        if not rows:
            return None
        out = [[
            train_label_title(r.sequence), self.choice_label(r.choice), r.stage, env_title(r.env),
            r.start, r.before, r.after_own, r.final,
            Cell(r.forgetting, fmt="{:+.1f}"), Cell(r.transfer, fmt="{:+.1f}"), r.joint_final,
        ] for r in rows]
        return Table(
            key="sequential",
            title="Sequential training: forgetting and transfer",
            columns=["sequence", "choice", "stage", "env", "at start", "before own stage", "after own stage",
                     "final", "forgetting (points)", "transfer (points)", "joint training final"],
            rows=out,
            note=("Forgetting = after its own stage − final (positive: later stages made the agent forget). "
                  "Transfer = just before its own stage − at start (what earlier stages gave for free). "
                  "'Joint training final' is the mixture run on the same envs (last-K mean), if the sweep has one."),
        )

    def profile_table(self) -> Table | None:
        if not self.profiles:
            return None
        pooled: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for p in self.profiles:
            for k, v in p.metrics.items():
                pooled[(p.env, p.augment)][k].append(v * (100.0 if k == "success_rate" else 1.0))
        rank_cols = [(self.choice_label(c), r.scores) for c, r in self.rankings.items()]
        rank_cols += self.combined_rankings()
        rows = []
        for (env, aug) in sorted(pooled, key=lambda k: (env_sort_key(k[0]), k[1] != "none", k[1])):
            m = pooled[(env, aug)]
            row = [env_title(env), aug]
            row += [Cell(mean_std(m.get("avg_chars", [])), fmt="{:.0f}")]
            row += [mean_std(m.get(k, [])) for k in ("avg_steps", "success_rate", "optimal_len")]
            row += [scores.get(env) if aug == "none" else None for _, scores in rank_cols]
            rows.append(row)
        return Table(
            key="env_profile",
            title="Environment profile",
            columns=["env", "augment", "state richness (avg chars)", "planning complexity (avg steps)",
                     "goal reachability %", "optimal length"] + [f"OOD rank ({label})" for label, _ in rank_cols],
            rows=rows,
            note=("Section 5 metrics: characters per state and trajectory length (a failure counts as the step "
                  "limit) over sampled trajectories; goal reachability is their success rate."),
        )

    def runs_table(self) -> Table:
        rows = []
        for choice in self.choices:
            for cell in self.cells_of(choice):
                steps = sorted({int(r.train.get("steps") or 0) for r in cell.runs})
                wall = [r.wall_seconds for r in cell.runs if r.wall_seconds is not None]
                rows.append([
                    train_label_title(cell.train_label), self.choice_label(choice), cell.kind,
                    len(cell.runs), ", ".join(cell.seeds), ", ".join(map(str, steps)),
                    max(len(r.checkpoints()) for r in cell.runs),
                    (sum(wall) / len(wall) / 60.0) if wall else None,
                ])
        return Table(
            key="runs", title="Completed runs",
            columns=["training env", "choice", "kind", "runs", "seeds", "train steps", "checkpoints",
                     "wall minutes (mean)"],
            rows=rows,
        )

    def failed_table(self) -> Table | None:
        if not self.failed:
            return None
        rows = [[r.source, train_label_title(r.train_env), ", ".join(f"{k}={norm_value(v)}" for k, v in
                 sorted(r.variant.items())), r.error or "(no message)"] for r in self.failed]
        return Table(key="failed_runs", title="Failed runs (left out of every figure)",
                     columns=["summary", "training env", "variant", "error"], rows=rows)

    def long_table(self) -> Table:
        """One row per (choice, training env, eval env): the sweep's results in one pivotable table."""
        rows = []
        for choice in self.choices:
            d = dict(choice)
            for cell in self.cells_of(choice):
                for env in self.eval_envs:
                    stat = cell.final.get(env)
                    start = cell.start.get(env)
                    rows.append(
                        [self.choice_label(choice)] + [d.get(k, "") for k in self.variant_keys] + [
                            cell.train_label, cell.kind, env, "ID" if cell.is_id(env) else "OOD",
                            stat.mean if stat else None, stat.std if stat else None, stat.n if stat else 0,
                            " ".join(f"{cell.per_seed[env][s]:.4f}" for s in cell.seeds
                                     if s in cell.per_seed.get(env, {})),
                            start.mean if start else None,
                        ])
        return Table(
            key="results_long", title="All results (long format)",
            columns=["choice"] + self.variant_keys + [
                "train_env", "kind", "eval_env", "role", f"{self.settings.metric}_mean",
                f"{self.settings.metric}_std", "n_seeds", "per_seed", "start_mean"],
            rows=rows, digits=2,
        )

    def _metric_title(self) -> str:
        m = self.settings.metric
        name = "Success rate %" if m == "success_rate" else m
        return f"{name}, pass@1" if m == "success_rate" else name


def _profile_of(run: RunSummary) -> list[ProfileEntry]:
    return profile_entries(run.profile or {}, run.source, augment=run.variant.get("augment"))


def _sign_css(value: float | None) -> str | None:
    if value is None:
        return None
    return "pos" if value > 0 else "neg" if value < 0 else None

