"""The report as a document: an ordered list of sections of tables and figures, built from a sweep
aggregate. Rendering (HTML, Markdown, CSV, wandb) reads this and computes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from agentgen.report import tables
from agentgen.report.aggregate import Settings, SweepAggregate
from agentgen.report.plots import Figure, delta_bars, learning_curves, success_heatmap
from agentgen.report.schema import ProfileEntry, RunSummary
from agentgen.report.table_format import Table


@dataclass
class Section:
    key: str
    title: str
    intro: str
    items: list[Table | Figure] = field(default_factory=list)


@dataclass
class Report:
    title: str
    source: str
    aggregate: SweepAggregate
    overview: list[tuple[str, str]]
    sections: list[Section]
    data_tables: list[Table] = field(default_factory=list)  # CSV and wandb only (too long to read)

    @property
    def settings(self) -> Settings:
        return self.aggregate.settings

    @property
    def warnings(self) -> list[str]:
        return self.aggregate.warnings

    @property
    def tables(self) -> list[Table]:
        return [t for s in self.sections for t in s.items if isinstance(t, Table)] + self.data_tables

    @property
    def figures(self) -> list[Figure]:
        return [f for s in self.sections for f in s.items if isinstance(f, Figure)]

    def table(self, key: str) -> Table:
        for t in self.tables:
            if t.key == key:
                return t
        raise KeyError(f"no table {key!r} in the report; tables: {', '.join(t.key for t in self.tables)}")


def build_report(
    runs: Sequence[RunSummary],
    source: str,
    settings: Settings | None = None,
    profiles: Sequence[ProfileEntry] = (),
    title: str | None = None,
    plots: bool = True,
    problems: Sequence[str] = (),
) -> Report:
    """Aggregate ``runs`` and lay out the report. ``plots=False`` skips matplotlib (tables only);
    ``problems`` (files the source had to leave out) head the report's warnings."""
    agg = SweepAggregate(runs, settings, profiles)
    agg.warnings[:0] = list(problems)
    s = agg.settings
    if not agg.completed and not agg.profiles:
        agg.warnings.append("no completed run in the source: every table below is empty")
    sections = []

    matrices = Section("success", "Success matrices",
                       "Train on the row's env, evaluate on every env's test split; one matrix per modeling choice.")
    for choice in agg.choices:
        matrices.items.append(tables.matrix_table(agg, choice))
        if plots and (fig := success_heatmap(agg, choice)) is not None:
            matrices.items.append(fig)
        if (change := tables.change_table(agg, choice)) is not None:
            matrices.items.append(change)
    sections.append(matrices)

    delta = Section("delta_ood", "Delta-OOD: augmentation, thinking and SFT variants",
                    "Each variant row against the baseline row that differs from it only in that factor "
                    f"(baselines: {', '.join(f'{k}={v}' for k, v in s.baselines.items())}).")
    if (t := tables.delta_table(agg)) is not None:
        delta.items.append(t)
        if plots and (fig := delta_bars(agg)) is not None:
            delta.items.append(fig)
    sections.append(delta)

    ranking = Section("ranking", "OOD ranking", "Which training env transfers best (lower score is better).")
    if (t := tables.ranking_summary_table(agg)) is not None:
        ranking.items.append(t)
        ranking.items += [d for c in agg.rankings if (d := tables.ranking_detail_table(agg, c)) is not None]
    sections.append(ranking)

    if (t := tables.sequential_table(agg)) is not None:
        sections.append(Section("sequential", "Sequential training",
                                "Stage after stage on different envs: what later stages cost earlier ones.", [t]))
    if (t := tables.profile_table(agg)) is not None:
        sections.append(Section("profile", "Environment profile",
                                "The environment properties the study relates to OOD transfer.", [t]))
    if plots:
        curves = Section("curves", "Learning curves", "Evaluation at every checkpoint, one panel per eval env.")
        curves.items = [f for c in agg.choices if (f := learning_curves(agg, c)) is not None]
        if curves.items:
            sections.append(curves)

    runs_section = Section("runs", "Runs", "Every summary the report read.", [tables.runs_table(agg)])
    if (t := tables.failed_table(agg)) is not None:
        runs_section.items.append(t)
    sections.append(runs_section)
    sections = [sec for sec in sections if sec.items]

    constant = agg.constant_settings()
    overview = [
        ("source", source),
        ("summaries read", f"{len(runs)} ({len(agg.completed)} completed, {len(agg.failed)} failed)"),
        ("metric", f"{s.metric}, mean over the last {s.last_k} checkpoints, then mean ± std over seeds"),
        ("OOD rank ties", f"gaps under {s.tie_points:g} points"),
        ("modeling choices", "; ".join(agg.choice_label(c) for c in agg.choices) or "-"),
        ("fixed across the sweep", ", ".join(f"{k}={v}" for k, v in constant.items()) or "-"),
        ("eval envs", ", ".join(agg.eval_envs) or "-"),
    ]
    return Report(title=title or f"agentgen report: {source}", source=source, aggregate=agg,
                  overview=overview, sections=sections, data_tables=[tables.long_table(agg)])
