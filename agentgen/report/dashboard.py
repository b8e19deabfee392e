"""A saved wandb view (workspace) for reviewing one sweep, built with wandb-workspaces, the library for
wandb's UI:

- eval success of every eval env against ``trainer/global_step``, grouped by training env, then the same
  grouped by thinking;
- the run summaries (``final/...``) across the modeling choices: parallel coordinates and bars;
- the report run's tables (``report/<table>``) and figures (``report/figures/<figure>``).

Runs are filtered to the sweep's group and grouped by ``env`` and ``think`` in the runs table.
``dashboard_metrics`` lists what every panel names, so a test (or a user) can check those against the
metrics the runs really log. Saving the view needs a wandb login; offline, the spec is written to a file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentgen.report.document import Report
from agentgen.report.schema import env_sort_key, env_title
from agentgen.report.sources import EVAL_PREFIX, STEP_KEY
from agentgen.report.wandb_tables import FINAL_PREFIX

GROUP_BY = ("env", "think")  # the runs table's grouping: training env, then thinking
SPEC_FILE = "wandb_dashboard.json"


@dataclass
class DashboardMetrics:
    """What the view's panels name, by where wandb looks them up."""

    history: set[str] = field(default_factory=set)  # x / y of line plots (the jobs' logged history)
    summary: set[str] = field(default_factory=set)  # run summary keys (bars, parallel coordinates)
    config: set[str] = field(default_factory=set)  # top-level config keys (group-by, parallel coordinates)
    report: set[str] = field(default_factory=set)  # keys of the report run (tables and figures)


def build_workspace(entity: str, project: str, group: str, eval_envs: Iterable[str],
                    report: Report | None = None, choices: Sequence[str] = GROUP_BY, metric: str = "success_rate"):
    """The view of sweep ``group``: a ``wandb_workspaces.workspaces.Workspace`` (not saved)."""
    import wandb_workspaces.reports.v2 as wr
    import wandb_workspaces.workspaces as ws
    from wandb_workspaces import expr

    envs = sorted(dict.fromkeys(eval_envs), key=env_sort_key)
    if not envs:
        raise ValueError(f"the dashboard of group {group!r} needs at least one eval env; the sweep's runs "
                         "evaluated none (are they finished? python -m agentgen.cluster.status <sweep>)")

    def curves(by: str) -> list[Any]:
        return [wr.LinePlot(title=f"{env_title(e)} {metric} by {by}", x=STEP_KEY, y=[f"{EVAL_PREFIX}{e}/{metric}"],
                            groupby=wr.Config(by), groupby_aggfunc="mean", groupby_rangefunc="stderr",
                            range_y=(0, 1))
                for e in envs]

    short = "success" if metric == "success_rate" else metric
    summary_keys = [f"{FINAL_PREFIX}in_domain_{short}", f"{FINAL_PREFIX}ood_mean_{short}"]
    sections = [
        ws.Section(name="Eval success by training env", panels=curves("env"), is_open=True),
        ws.Section(name="Eval success by thinking", panels=curves("think"), is_open=True),
        ws.Section(name="Run summaries by choice", is_open=True, panels=[
            wr.ParallelCoordinatesPlot(title="Choices -> in-domain and OOD success", columns=[
                *(wr.ParallelCoordinatesPlotColumn(metric=wr.Config(c)) for c in choices),
                *(wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(k)) for k in summary_keys)]),
            wr.BarPlot(title="In-domain and mean OOD success by training env", metrics=summary_keys,
                       groupby=wr.Config("env"), groupby_aggfunc="mean", groupby_rangefunc="stderr"),
            wr.BarPlot(title="Final success per eval env by thinking",
                       metrics=[f"{FINAL_PREFIX}{e}/{metric}" for e in envs],
                       groupby=wr.Config("think"), groupby_aggfunc="mean", groupby_rangefunc="stderr"),
        ]),
    ]
    if report is not None:
        tables = [wr.WeavePanelSummaryTable(table_name=f"report/{t.key}") for t in report.tables]
        figures = [f"report/figures/{f.key}" for f in report.figures]
        panels = tables + ([wr.MediaBrowser(title="Heatmaps and learning curves", media_keys=figures)]
                           if figures else [])
        sections.append(ws.Section(name="Report tables", panels=panels, is_open=True))
    return ws.Workspace(
        entity=entity, project=project, name=f"agentgen sweep {group}", sections=sections,
        settings=ws.WorkspaceSettings(x_axis=STEP_KEY),
        runset_settings=ws.RunsetSettings(
            filters=[expr.Metric("Group") == group],
            groupby=[expr.Config(c) for c in GROUP_BY],
            pinned_columns=[*(f"config:{c}" for c in choices), *(f"summary:{k}" for k in summary_keys)],
        ),
    )


def sweep_workspace(report: Report, entity: str, project: str, group: str, metric: str = "success_rate"):
    """The view ``python -m agentgen.report <sweep> --wandb-dashboard`` saves: the report's eval envs, its
    tables and figures, and the choices that vary across the sweep beside ``env`` and ``think``."""
    agg = report.aggregate
    choices = list(dict.fromkeys([*GROUP_BY, *agg.varying_keys]))
    return build_workspace(entity, project, group, agg.eval_envs, report, choices=choices, metric=metric)


def dashboard_metrics(workspace: Any) -> DashboardMetrics:
    """Every metric, config key and report key the view's panels and runs table name."""
    import wandb_workspaces.reports.v2 as wr

    out = DashboardMetrics()

    def add(metric: Any, default: set[str]) -> None:
        if isinstance(metric, wr.Config):
            out.config.add(metric.name)
        elif isinstance(metric, wr.SummaryMetric):
            out.summary.add(metric.name)
        elif isinstance(metric, str):
            default.add(metric)

    for section in workspace.sections:
        for panel in section.panels:
            if isinstance(panel, wr.LinePlot):
                add(panel.x, out.history)
                for y in panel.y:
                    add(y, out.history)
                add(panel.groupby, out.config)
            elif isinstance(panel, wr.BarPlot):
                for m in panel.metrics:
                    add(m, out.summary)
                add(panel.groupby, out.config)
            elif isinstance(panel, wr.ParallelCoordinatesPlot):
                for column in panel.columns:
                    add(column.metric, out.summary)
            elif isinstance(panel, wr.WeavePanelSummaryTable):
                out.report.add(panel.table_name)
            elif isinstance(panel, wr.MediaBrowser):
                out.report.update(panel.media_keys)
            else:
                raise TypeError(f"dashboard_metrics does not know panel type {type(panel).__name__}")
    for g in workspace.runset_settings.groupby:
        out.config.add(g.name)
    for column in workspace.runset_settings.pinned_columns:  # "config:env", "summary:final/...", "run:..."
        kind, _, name = column.partition(":")
        if kind == "config":
            out.config.add(name)
        elif kind == "summary":
            out.summary.add(name)
    return out


def workspace_spec(workspace: Any) -> dict[str, Any]:
    """The view as wandb stores it (its JSON spec), built locally with no server."""
    model = workspace._to_model()  # the library's own serialisation; save() uploads exactly this
    return model.model_dump(by_alias=True, exclude_none=True, mode="json")


def save_dashboard(workspace: Any, out_dir: str | Path, online: bool) -> tuple[Path, str | None]:
    """Write the spec to ``<out_dir>/wandb_dashboard.json``; online, also save the view (returns its URL)."""
    path = Path(out_dir) / SPEC_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(workspace_spec(workspace), indent=1))
    if not online:
        return path, None
    workspace.save()
    return path, workspace.url
