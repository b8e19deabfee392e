"""Evaluation aggregation and the sweep report: "which training env and choices transfer best?".

``python -m agentgen.report <sweep dir | wandb:<entity>/<project>/<group>>`` writes a self-contained
HTML report plus the same tables as CSV and Markdown. In Python::

    from agentgen.report import load_source, build_report, write_report
    loaded = load_source("multirun/2026-01-01/12-00-00")
    report = build_report(loaded.runs, "my sweep", profiles=loaded.profiles, problems=loaded.problems)
    write_report(report, "out/")

The arithmetic (Delta-OOD, OOD ranking, forgetting/transfer) is in ``agentgen.report.metrics``.
"""

from agentgen.report.aggregate import Settings, SweepAggregate
from agentgen.report.document import Report, build_report
from agentgen.report.render import render_html, render_markdown, write_report
from agentgen.report.schema import RunSummary, SummaryError, load_summary
from agentgen.report.sources import load_directory, load_source, read_offline_run
from agentgen.report.wandb_tables import TrajectorySampleTable, log_report_tables, log_summary_to_wandb

__all__ = [
    "Report",
    "RunSummary",
    "Settings",
    "SummaryError",
    "SweepAggregate",
    "TrajectorySampleTable",
    "build_report",
    "load_directory",
    "load_source",
    "load_summary",
    "log_report_tables",
    "log_summary_to_wandb",
    "read_offline_run",
    "render_html",
    "render_markdown",
    "write_report",
]
