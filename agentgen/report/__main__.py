"""``python -m agentgen.report <sweep dir | wandb:<entity>/<project>/<group>>``: aggregate a sweep and
write report.html (self-contained), report.md, tables/*.csv and figures/*.png.

``--wandb`` also logs the tables and figures into one wandb run (``job_type=report``) in the sweep's
group; ``--wandb-dashboard`` builds the sweep's saved view (``agentgen.report.dashboard``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from agentgen.report.aggregate import DEFAULT_BASELINES, DEFAULT_COMBINE_OVER, Settings
from agentgen.report.document import build_report
from agentgen.report.render import write_report
from agentgen.report.sources import WANDB_SOURCE_PREFIX, load_source, parse_wandb_source


def parse_baselines(items: list[str]) -> dict[str, str]:
    out = dict(DEFAULT_BASELINES)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise argparse.ArgumentTypeError(
                f"--baseline {item!r} must look like FACTOR=VALUE, e.g. augment=none, think=true or sft=none")
        out[key.strip()] = value.strip()
    return out


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m agentgen.report",
        description="Aggregate a sweep's evaluations into the study's tables: success matrices, Delta-OOD, "
                    "OOD ranking, forgetting/transfer and the environment profile.")
    p.add_argument("source", help="a sweep directory (summary.json files, found recursively) or "
                                  "'wandb:<entity>/<project>/<group>' (wandb's public API, online)")
    p.add_argument("--out", help="output directory (default: <sweep dir>/report, or ./report-<group> for wandb)")
    p.add_argument("--last-k", type=int, default=4, help="checkpoints averaged per run (default 4, as the study)")
    p.add_argument("--metric", default="success_rate",
                   help="eval metric to report (default success_rate = pass@1; e.g. pass@8 if jobs log it)")
    p.add_argument("--tie-points", type=float, default=0.5, help="OOD ranking tie threshold in points (default 0.5)")
    p.add_argument("--baseline", action="append", default=[], metavar="FACTOR=VALUE",
                   help="baseline value of a factor for Delta-OOD (defaults: "
                        + ", ".join(f"{k}={v}" for k, v in DEFAULT_BASELINES.items()) + "); repeatable")
    p.add_argument("--combine-over", default=DEFAULT_COMBINE_OVER,
                   help="variant key whose OOD ranks are summed, like Table 1's V1+V2 (default: start)")
    p.add_argument("--wandb-group", help="with a directory of offline wandb runs: only this group")
    p.add_argument("--title", help="report title")
    p.add_argument("--no-plots", action="store_true", help="tables only (skips matplotlib)")
    p.add_argument("--wandb", action="store_true",
                   help="also log the tables (wandb Tables) and figures (images) into one wandb run of "
                        "job_type=report in the sweep's group (offline files unless logged in; honours WANDB_MODE)")
    p.add_argument("--wandb-dashboard", action="store_true",
                   help="build the sweep's saved wandb view (eval curves by train env and thinking, run summaries, "
                        "the report tables); saved when logged in, always written to <out>/wandb_dashboard.json")
    p.add_argument("--wandb-project", help="wandb project (default: the jobs' logger.project, else agentgen)")
    p.add_argument("--wandb-entity", help="wandb entity (default: the jobs' logger.entity, else your default)")
    p.add_argument("--log-wandb", metavar="PROJECT", help="same as --wandb --wandb-project PROJECT")
    return p


def wandb_target(args: argparse.Namespace, runs: list) -> tuple[str | None, str, str]:
    """(entity, project, group) of the sweep in wandb: a wandb source names them; for a sweep dir they are
    the jobs' logger settings, the group being the one the jobs logged into (``logger.group`` when set,
    else the sweep dir's group, as ``agentgen.tracking.sweep_group`` names it)."""
    from agentgen.tracking import sweep_group

    logger = next((r.config.get("logger") for r in runs if isinstance(r.config.get("logger"), dict)), {})
    if args.source.startswith(WANDB_SOURCE_PREFIX):
        entity, project, group = parse_wandb_source(args.source)
    else:
        entity, project = logger.get("entity"), logger.get("project")
        group = args.wandb_group or logger.get("group") or sweep_group(Path(args.source).absolute())
    return (args.wandb_entity or entity, args.wandb_project or args.log_wandb or project or "agentgen", group)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    try:
        baselines = parse_baselines(args.baseline)
        settings = Settings(last_k=args.last_k, metric=args.metric, tie_points=args.tie_points,
                            baselines=baselines, combine_over=args.combine_over)
        loaded = load_source(args.source, args.wandb_group)
    except (argparse.ArgumentTypeError, ValueError, FileNotFoundError) as err:
        parser.error(str(err))
    if args.out:
        out = Path(args.out)
    elif args.source.startswith(WANDB_SOURCE_PREFIX):
        out = Path(f"report-{parse_wandb_source(args.source)[2]}")
    else:
        out = Path(args.source) / "report"
    try:
        report = build_report(loaded.runs, args.source, settings, loaded.profiles, title=args.title,
                              plots=not args.no_plots, problems=loaded.problems)
    except ValueError as err:
        parser.error(str(err))
    paths = write_report(report, out)
    agg = report.aggregate
    print(f"read {len(loaded.runs)} summaries ({len(agg.completed)} completed, {len(agg.failed)} failed), "
          f"{len(loaded.problems)} left out")
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {paths['html']}\nwrote {paths['markdown']}\nwrote {out / 'tables'}/ ({len(report.tables)} CSV)")
    if args.wandb or args.log_wandb or args.wandb_dashboard:
        entity, project, group = wandb_target(args, loaded.runs)
    if args.wandb or args.log_wandb:
        import wandb

        from agentgen.report.wandb_tables import log_report_tables
        from agentgen.tracking import resolve_mode

        run = wandb.init(project=project, entity=entity, job_type="report", group=group, name=f"report {group}",
                         config={"source": args.source, "last_k": args.last_k, "metric": args.metric},
                         dir=str(out), mode=resolve_mode(None), settings=wandb.Settings(silent=True, console="off"))
        log_report_tables(report, run)
        run.finish()
        print(f"logged {len(report.tables)} tables and {len(report.figures)} figures to wandb run {run.id} "
              f"(project {project}, group {group})")
    if args.wandb_dashboard:
        from agentgen.report.dashboard import save_dashboard, sweep_workspace
        from agentgen.tracking import resolve_mode

        online = resolve_mode(None) == "online"
        if online and not entity:
            import wandb

            entity = wandb.Api().default_entity
        workspace = sweep_workspace(report, entity or "<entity>", project, group, metric=args.metric)
        path, url = save_dashboard(workspace, out, online)
        print(f"wrote the dashboard spec {path}" + (f"\nsaved the wandb view {url}" if url else
              " (offline: run the same command logged in to wandb to save it as a view)"))
    return 0 if agg.completed or agg.profiles else 1


if __name__ == "__main__":
    sys.exit(main())
