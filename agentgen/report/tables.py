"""The report's tables, rendered from a ``SweepAggregate``'s arithmetic (agentgen/report/aggregate.py): success
matrices, change from the start checkpoint, Delta-OOD, OOD rankings, sequential forgetting / transfer, the
environment profile, the runs and the long-format results. ``Table`` and its CSV / Markdown / HTML renderings
are in agentgen/report/table_format.py (re-exported here)."""

from __future__ import annotations

from collections import defaultdict

from agentgen.report.aggregate import SweepAggregate
from agentgen.report.metrics import mean_std
from agentgen.report.schema import Choice, env_sort_key, env_title, norm_value, train_label_title
from agentgen.report.table_format import (  # noqa: F401 - the table type and renderings, importable from here too
    MISSING,
    Cell,
    Table,
    format_cell,
    plain_value,
    slug,
    to_csv,
    to_html,
    to_markdown,
)


def matrix_table(agg: SweepAggregate, choice: Choice) -> Table:
    unit = agg.settings.unit
    cols = ["training env"] + [env_title(e) for e in agg.eval_envs] + [f"OOD mean{unit and ' ' + unit}", "seeds"]
    rows = []
    cells = agg.cells_of(choice)
    start = agg.pooled_start(cells)
    if start:
        rows.append(["start checkpoint (step 0)"] + [start.get(e) for e in agg.eval_envs] + [None, ""])
    for cell in cells:
        row = [train_label_title(cell.train_label)]
        for env in agg.eval_envs:
            stat = cell.final.get(env)
            row.append(Cell(stat, tag="ID" if cell.is_id(env) else None, css=None if cell.is_id(env) else "ood"))
        row.append(agg.ood_mean(cell))
        row.append(", ".join(cell.seeds))
        rows.append(row)
    return Table(
        key=slug("success_" + agg.choice_label(choice)),
        title=f"{_metric_title(agg)} ({agg.choice_label(choice)})",
        columns=cols, rows=rows,
        note=(f"Mean over the last {agg.settings.last_k} checkpoints, then over seeds (± sample std). "
              "ID = the training env(s); other cells are out-of-domain."),
        meta={"choice": choice},
    )



def change_table(agg: SweepAggregate, choice: Choice) -> Table | None:
    """Final minus step-0 evaluation, per seed: what training on one env cost or gave the others."""
    rows = []
    for cell in agg.cells_of(choice):
        row = [train_label_title(cell.train_label)]
        any_value = False
        for env in agg.eval_envs:
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
        key=slug("change_from_start_" + agg.choice_label(choice)),
        title=f"Change from the start checkpoint, points ({agg.choice_label(choice)})",
        columns=["training env"] + [env_title(e) for e in agg.eval_envs], rows=rows,
        note="Last-K mean minus the step-0 evaluation of the same run, then mean ± std over seeds. "
             "Negative OOD cells are the generalization tax.",
    )



def delta_table(agg: SweepAggregate) -> Table | None:
    rows = agg.delta_rows()
    if not rows:
        return None
    out = []
    for r in rows:
        out.append([
            train_label_title(r.train_label),
            r.factor,
            agg.choice_label(r.choice),
            agg.choice_label(r.baseline),
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



def ranking_summary_table(agg: SweepAggregate) -> Table | None:
    if not agg.rankings:
        return None
    combined = agg.combined_rankings()
    envs = sorted({t for r in agg.rankings.values() for t in r.scores}, key=env_sort_key)
    cols = ["training env"] + [agg.choice_label(c) for c in agg.rankings] + [label for label, _ in combined]
    rows = []
    for env in envs:
        row = [env_title(env)] + [r.scores.get(env) for r in agg.rankings.values()]
        row += [scores.get(env) for _, scores in combined]
        rows.append(row)
    return Table(
        key="ood_rank_score",
        title="OOD ranking score (lower is better)",
        columns=cols, rows=rows, digits=0,
        note=(f"For each OOD eval env, the single-env training runs are ranked by success there (dense ranks; "
              f"gaps under {agg.settings.tie_points:g} points tie); a training env's score sums its ranks. "
              f"Combined columns add the scores of choices differing only in '{agg.settings.combine_over}', "
              "and are '-' for an env missing from any of them (as in the study's Table 1)."),
    )



def ranking_detail_table(agg: SweepAggregate, choice: Choice) -> Table | None:
    ranking = agg.rankings.get(choice)
    if ranking is None:
        return None
    envs = sorted(ranking.ranks, key=env_sort_key)
    rows = []
    for t in sorted(ranking.scores, key=env_sort_key):
        rows.append([env_title(t)] + [ranking.ranks[e].get(t) for e in envs] + [ranking.scores[t]])
    return Table(
        key=slug("ood_ranks_" + agg.choice_label(choice)),
        title=f"OOD ranks per eval env ({agg.choice_label(choice)})",
        columns=["training env"] + [f"rank on {env_title(e)}" for e in envs] + ["score"],
        rows=rows, digits=0,
    )



def sequential_table(agg: SweepAggregate) -> Table | None:
    rows = agg.sequential_rows()
    if not rows:
        return None
    out = [[
        train_label_title(r.sequence), agg.choice_label(r.choice), r.stage, env_title(r.env),
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



def profile_table(agg: SweepAggregate) -> Table | None:
    if not agg.profiles:
        return None
    pooled: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for p in agg.profiles:
        for k, v in p.metrics.items():
            pooled[(p.env, p.augment)][k].append(v * (100.0 if k == "success_rate" else 1.0))
    rank_cols = [(agg.choice_label(c), r.scores) for c, r in agg.rankings.items()]
    rank_cols += agg.combined_rankings()
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



def runs_table(agg: SweepAggregate) -> Table:
    rows = []
    for choice in agg.choices:
        for cell in agg.cells_of(choice):
            steps = sorted({int(r.train.get("steps") or 0) for r in cell.runs})
            wall = [r.wall_seconds for r in cell.runs if r.wall_seconds is not None]
            rows.append([
                train_label_title(cell.train_label), agg.choice_label(choice), cell.kind,
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



def failed_table(agg: SweepAggregate) -> Table | None:
    if not agg.failed:
        return None
    rows = [[r.source, train_label_title(r.train_env), ", ".join(f"{k}={norm_value(v)}" for k, v in
             sorted(r.variant.items())), r.error or "(no message)"] for r in agg.failed]
    return Table(key="failed_runs", title="Failed runs (left out of every figure)",
                 columns=["summary", "training env", "variant", "error"], rows=rows)



def long_table(agg: SweepAggregate) -> Table:
    """One row per (choice, training env, eval env): the sweep's results in one pivotable table."""
    rows = []
    for choice in agg.choices:
        d = dict(choice)
        for cell in agg.cells_of(choice):
            for env in agg.eval_envs:
                stat = cell.final.get(env)
                start = cell.start.get(env)
                rows.append(
                    [agg.choice_label(choice)] + [d.get(k, "") for k in agg.variant_keys] + [
                        cell.train_label, cell.kind, env, "ID" if cell.is_id(env) else "OOD",
                        stat.mean if stat else None, stat.std if stat else None, stat.n if stat else 0,
                        " ".join(f"{cell.per_seed[env][s]:.4f}" for s in cell.seeds
                                 if s in cell.per_seed.get(env, {})),
                        start.mean if start else None,
                    ])
    return Table(
        key="results_long", title="All results (long format)",
        columns=["choice"] + agg.variant_keys + [
            "train_env", "kind", "eval_env", "role", f"{agg.settings.metric}_mean",
            f"{agg.settings.metric}_std", "n_seeds", "per_seed", "start_mean"],
        rows=rows, digits=2,
    )



def _metric_title(agg: SweepAggregate) -> str:
    m = agg.settings.metric
    name = "Success rate %" if m == "success_rate" else m
    return f"{name}, pass@1" if m == "success_rate" else name


def _sign_css(value: float | None) -> str | None:
    if value is None:
        return None
    return "pos" if value > 0 else "neg" if value < 0 else None

