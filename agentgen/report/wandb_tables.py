"""The report on the wandb dashboard, and the two logging helpers jobs use so the report can find
their results in wandb:

- ``log_report_tables``: every report table as a ``wandb.Table`` (the long-format ``results_long``
  is the sweep's one pivotable table), the figures as images, and the headline numbers in the summary.
- ``TrajectorySampleTable``: trajectory samples as one INCREMENTAL table, so each evaluation appends
  its new rows instead of re-uploading all earlier ones.
- ``log_summary_to_wandb``: saves a job's summary.json into its run, mirrors the final evaluation
  as ``eval/<env>/<metric>`` summary keys (``agentgen.report.sources`` reads either back) and puts the
  report's per-run figures in the summary (``final/...``, ``run_summary_metrics``), so the runs table
  shows them as columns.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agentgen.report.aggregate import Settings, SweepAggregate
from agentgen.report.document import Report
from agentgen.report.schema import RunSummary, SummaryError
from agentgen.report.sources import EVAL_PREFIX, SUMMARY_FILE
from agentgen.tracking import TRAJECTORY_COLUMNS, TrajectorySampleTable  # noqa: F401  (re-exported)

FINAL_PREFIX = "final/"



def _wandb():
    import wandb

    return wandb


def report_wandb_tables(report: Report) -> dict[str, Any]:
    """{"report/<table key>": wandb.Table} for every table of the report."""
    wandb = _wandb()
    out = {}
    for table in report.tables:
        out[f"report/{table.key}"] = wandb.Table(
            columns=list(table.columns), data=[list(r) for r in table.number_rows()], allow_mixed_types=True)
    return out


def log_report_tables(report: Report, run: Any = None, images: bool = True) -> dict[str, Any]:
    """Log the report to ``run`` (default: the active run): its tables, figures and, in the run summary,
    each OOD ranking score and Delta-OOD figure (keys ``report/ood_rank/...``, ``report/delta_ood/...``)."""
    wandb = _wandb()
    run = run or wandb.run
    if run is None:
        raise RuntimeError("log_report_tables needs a wandb run: call wandb.init(...) first or pass run=")
    payload: dict[str, Any] = report_wandb_tables(report)
    if images:
        from PIL import Image

        for fig in report.figures:
            payload[f"report/figures/{fig.key}"] = wandb.Image(Image.open(io.BytesIO(fig.png)), caption=fig.title)
    run.log(payload)
    agg = report.aggregate
    for choice, ranking in agg.rankings.items():
        for env, score in ranking.scores.items():
            run.summary[f"report/ood_rank/{agg.choice_label(choice)}/{env}"] = score
    for row in agg.delta_rows():
        if row.delta is not None:
            run.summary[f"report/delta_ood/{agg.choice_label(row.choice)}/{row.train_label}"] = row.delta
    return payload


def run_summary_metrics(summary: Mapping[str, Any], settings: Settings | None = None) -> dict[str, float]:
    """One run's figures, computed by the report's own aggregation (so they equal its tables), as rates
    0..1 like ``eval/<env>/success_rate``:

    - ``final/<env>/success_rate``: mean of the last K checkpoint evaluations of that eval env;
    - ``final/in_domain_success``, ``final/ood_mean_success``: mean over the trained / the other envs;
    - ``final/<env>/change_from_start``, ``final/ood_mean_change``: minus the step-0 evaluation (only
      when the job evaluated before training).

    Empty for a failed run or one without evaluations."""
    settings = settings or Settings()
    try:
        run = RunSummary.from_dict(summary, "summary.json")
    except SummaryError:
        return {}
    if not run.completed or not (run.eval or run.eval_history):
        return {}
    try:
        agg = SweepAggregate([run], settings)
    except ValueError:  # the metric is in none of its evaluations
        return {}
    (cell,) = agg.cells.values()
    metric, scale, seed = settings.metric, settings.scale, run.seed
    final = {e: by_seed[seed] / scale for e, by_seed in cell.per_seed.items() if seed in by_seed}
    start = {e: by_seed[seed] / scale for e, by_seed in cell.start_per_seed.items() if seed in by_seed}
    out: dict[str, float] = {f"{FINAL_PREFIX}{e}/{metric}": v for e, v in final.items()}
    in_domain = [v for e, v in final.items() if cell.is_id(e)]
    ood = [e for e in final if not cell.is_id(e)]
    if in_domain:
        out[f"{FINAL_PREFIX}in_domain_{_short(metric)}"] = sum(in_domain) / len(in_domain)
    if ood:
        out[f"{FINAL_PREFIX}ood_mean_{_short(metric)}"] = sum(final[e] for e in ood) / len(ood)
    changes = {e: final[e] - start[e] for e in final if e in start}
    out.update({f"{FINAL_PREFIX}{e}/change_from_start": v for e, v in changes.items()})
    ood_changes = [changes[e] for e in ood if e in changes]
    if ood_changes and len(ood_changes) == len(ood):
        out[f"{FINAL_PREFIX}ood_mean_change"] = sum(ood_changes) / len(ood_changes)
    return out


def _short(metric: str) -> str:
    return "success" if metric == "success_rate" else metric


def log_summary_to_wandb(run: Any, summary_path: str | Path) -> None:
    """Make a job's summary.json readable from wandb: save the file into the run, mirror its final
    evaluation as ``eval/<env>/<metric>`` summary keys (what the dashboard and the report look for) and
    add the run's ``final/...`` figures (``run_summary_metrics``)."""
    path = Path(summary_path)
    data = json.loads(path.read_text())
    for env, metrics in (data.get("eval") or {}).items():
        for name, value in metrics.items():
            run.summary[f"{EVAL_PREFIX}{env}/{name}"] = value
    for key, value in run_summary_metrics(data).items():
        run.summary[key] = value
    if path.name != SUMMARY_FILE:
        raise ValueError(f"the report looks for a file named {SUMMARY_FILE!r} in wandb runs, got {path.name!r}")
    # wandb warns "Symlinked 1 file into the W&B run directory; call wandb.save again to sync new files" on the
    # console of every job, which would tell the user to do something for a file that is final here
    from wandb.errors import term

    shown = getattr(term, "_show_warnings", None)
    if shown is not None:
        term._show_warnings = False
    try:
        run.save(str(path), base_path=str(path.parent), policy="now")
    finally:
        if shown is not None:
            term._show_warnings = shown
